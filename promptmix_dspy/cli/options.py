"""Every shared option, declared once: typed option groups (dataclasses) and single-option aliases.

A command takes a group as one parameter (``lm: LMOptions``); ``@with_groups`` spreads the group's fields into
the command's signature for typer and packs them back into the dataclass before the command runs. Every value
defaults to None, which means "not given": a flag given with the default's value still overrides a spec,
and the config objects keep their own defaults (``given(group)`` holds only what was typed).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

__all__ = ["BudgetOptions", "DataOptions", "GenerationOptions", "LMOptions", "budget_fields", "DataDir", "DryRun", "Encoder", "Force", "LocalModel", "Reask", "RelabelBatch", "Programs", "Seed",
           "Shots", "SpecOptions", "Threads", "TopK", "Verbose", "given", "with_groups"]

# ----------------------------------------------------------------------------------------------------------
# single options shared by several commands

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="One seed for every random choice: the few-shot draw, "
                                                            "mixing, the student (default 0).")]
Shots = Annotated[Optional[int], typer.Option("--shots", "-k", help="Labelled examples per class the method may "
                                                                    "see (default 2).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="LLM requests in flight (default: the embedded "
                                                                  "server's slots, or 16 for a hosted endpoint; never more "
                                                                  "than the embedded server's slots).")]
TopK = Annotated[Optional[int], typer.Option("--top-k", help="Candidate classes offered to the relabeler (default 5).")]
Encoder = Annotated[Optional[str], typer.Option("--encoder", help="Sentence encoder for top-k (name or dir; default "
                                                                  "the packaged all-MiniLM-L6-v2).")]
Programs = Annotated[Optional[str], typer.Option("--programs", help="Folder of compiled programs (promptmix "
                                                 "compile); {dataset} becomes each dataset's name: programs/{dataset}.")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", envvar="PROMPTMIX_DATA_DIR", help="Folder with "
                                                 "<dataset>/{train,test}.jsonl, labels.json, descriptions.json.")]
LocalModel = Annotated[Optional[str], typer.Option("--local-model", envvar="PROMPTMIX_LOCAL_MODEL", help="The "
                       "embedded model when no --lm is given: a known name (promptmix models) or a .gguf file "
                       "(default qwen2.5-coder-1.5b).")]
RelabelBatch = Annotated[Optional[int], typer.Option("--relabel-batch", help="Texts labelled in one relabel call "
                         "over one candidate set (default 1, the paper's one text per call, whose answer carries class "
                         "probabilities; more cost fewer tokens, give hard labels only and, on the embedded model, "
                         "label worse).")]
Reask = Annotated[Optional[int], typer.Option("--reask", help="Follow-up asks for the texts clean-up dropped from a "
                                              "generation call (default 1; 0 = the paper's protocol).")]
ProbePerClass = Annotated[Optional[int], typer.Option("--probe-per-class", min=1, help="The second round's probe "
                                                    "pool: texts per class the LLM writes and labels, a third held "
                                                    "out to measure the student's confusion (default: --per-class; "
                                                    "a2fb / --rounds 2 only).")]
Force = Annotated[bool, typer.Option("--force", help="Redo a cell or generation made with other settings instead "
                                     "of stopping with an error.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the planned LLM calls, tokens and price, run nothing.")]


# ----------------------------------------------------------------------------------------------------------
# option groups


@dataclass
class DataOptions:
    """Which dataset, and how to read a user's file."""

    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Built-in name (trec6, subj, banking77, "
                                         "twitter_complaints), a jsonl/json/csv file, or a folder with train/test "
                                         "files.")]
    data_dir: DataDir = None
    text_column: Annotated[Optional[str], typer.Option("--text-column", help="Text column of a user dataset "
                                                       "(default text).")] = None
    label_column: Annotated[Optional[str], typer.Option("--label-column", help="Label column of a user dataset "
                                                        "(default label).")] = None
    descriptions: Annotated[Optional[Path], typer.Option("--descriptions", help="JSON file mapping each label to a "
                                                         "one-sentence description.")] = None

    def load(self):
        from promptmix_dspy.data.datasets import load_dataset

        return load_dataset(self.dataset, data_dir=self.data_dir, text_column=self.text_column or "text",
                            label_column=self.label_column or "label", descriptions=self.descriptions)


@dataclass
class LMOptions:
    """Which LLM and how to reach it (every command that calls an LLM takes these)."""

    lm: Annotated[Optional[str], typer.Option("--lm", envvar="PROMPTMIX_LM", help="litellm model string "
                  "(openai/gpt-4o-mini, anthropic/..., ollama_chat/..., hosted_vllm/...). Default: the embedded "
                  "local model (--local-model).")] = None
    local_model: LocalModel = None
    api_base: Annotated[Optional[str], typer.Option("--api-base", envvar="PROMPTMIX_API_BASE",
                                                    help="Endpoint URL for --lm.")] = None
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="Name of the environment variable "
                           "holding the API key (litellm reads the provider's usual one by default). Never pass a "
                           "key itself.")] = None
    adapter: Annotated[Optional[str], typer.Option("--adapter", help="auto | chat | json | llama-cpp (JSON-schema "
                                                   "constrained); default auto.")] = None
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Max completion tokens per call "
                                                      "(default 256).")] = None
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass DSPy's response cache.")] = False
    server_parallel: Annotated[Optional[int], typer.Option("--server-parallel", help="Worker processes of the "
                               "embedded server (default: what suits the local model on this machine).")] = None
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds one LLM request may take before "
                                                     "it is retried (default 120).")] = None
    num_retries: Annotated[Optional[int], typer.Option("--num-retries", help="Transport retries of one LLM "
                           "request, with backoff (timeouts, 429, 5xx, broken connections; default 3).")] = None
    batch_api: Annotated[bool, typer.Option("--batch-api", help="Send the calls through the provider's batch API "
                         "(OpenAI, OpenAI-compatible and Anthropic: half the price, answers within 24 hours), stage by "
                         "stage; "
                         "a re-run picks up a batch in flight instead of submitting it again.")] = False
    batch_fallback: Annotated[Optional[str], typer.Option("--batch-fallback", help="What a failed or expired batch "
                              "item becomes: batch (sent in the next batch; default) or sync (called at once).")] = None
    batch_poll_seconds: Annotated[Optional[float], typer.Option("--batch-poll", help="Seconds between checks of a "
                                  "batch in flight (default 30).")] = None

    def fields(self) -> dict[str, Any]:
        """LMSettings fields that were given."""
        out = {k: v for k, v in given(self).items() if k not in ("lm", "no_cache")}  # batch_api only when True
        if self.lm is not None:
            out["model"] = self.lm
        if self.no_cache:
            out["cache"] = False
        return out

    def settings(self):
        from promptmix_dspy.llm.settings import LMSettings

        return LMSettings(**self.fields())


@dataclass
class BudgetOptions:
    """What a run may spend, and how hard it may push the endpoint."""

    threads: Threads = None
    max_errors: Annotated[Optional[int], typer.Option("--max-errors", help="Stop cleanly after this many failed "
                                                      "LLM calls (resumable).")] = None
    max_cost: Annotated[Optional[float], typer.Option("--max-cost", help="Stop cleanly once the estimated USD cost "
                                                      "reaches this, resumed sessions included.")] = None


@dataclass
class SpecOptions:
    """Overrides of an experiment spec (run, bench); anything not given keeps the spec's value."""

    shots: Shots = None
    per_class: Annotated[Optional[int], typer.Option("--per-class", help="Generated examples to keep per class "
                                                     "(default 10).")] = None
    teacher_test_limit: Annotated[Optional[int], typer.Option("--teacher-test-limit", help="The llm method labels "
                                  "a fixed seeded sample of this many test texts (default: all).")] = None
    probe_per_class: ProbePerClass = None
    student: Annotated[Optional[str], typer.Option("--student", help="Student model: hub name or folder (default "
                                                   "all-MiniLM-L6-v2).")] = None
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Student epochs (default 5).")] = None
    min_steps: Annotated[Optional[int], typer.Option("--min-steps", min=0, help="Student optimizer steps at least "
                         "(default 300; 0: exactly --epochs).")] = None
    programs: Programs = None
    compiled_programs: Annotated[Optional[str], typer.Option("--compiled-programs", help="Where a2c's relabeler, "
                                 "compiled on each seed's own seeds, lives ({dataset} and {seed} filled in; default "
                                 "programs/{dataset}/seed{seed}; compiled there on first use).")] = None
    compiled_dev_programs: Annotated[Optional[str], typer.Option("--compiled-dev-programs", help="The same for "
                                     "a2c-dev, compiled against 10 more labelled texts per class (default "
                                     "programs/{dataset}/seed{seed}-dev10).")] = None
    calibrate: Annotated[Optional[str], typer.Option("--calibrate", help="batch (default), content-free or none: how "
                         "relabel probabilities are calibrated over the run's texts.")] = None
    relabel_batch: RelabelBatch = None
    reask: Reask = None
    data_dir: DataDir = None

    def overrides(self, lm: LMOptions, budget: BudgetOptions) -> dict[str, Any]:
        student = {k: v for k, v in {"student": self.student, "epochs": self.epochs,
                                     "min_steps": self.min_steps}.items() if v is not None}
        values = {**given(self), **given(budget), "student": student or None, "lm": lm.fields() or None}
        values.pop("epochs", None)
        values.pop("min_steps", None)
        if self.data_dir is not None:
            values["data_dir"] = str(self.data_dir)
        for key in ("programs", "compiled_programs", "compiled_dev_programs"):  # a flag is relative to the cwd
            if values.get(key):
                values[key] = str(Path(values[key]).absolute())
        return {k: v for k, v in values.items() if v is not None}


def given(group: Any) -> dict[str, Any]:
    """The group's fields that were given (not None, and True for flags)."""
    return {f.name: getattr(group, f.name) for f in dataclasses.fields(group)
            if getattr(group, f.name) is not None and getattr(group, f.name) is not False}


# ----------------------------------------------------------------------------------------------------------
# spreading groups into a command's signature


def with_groups(command: Callable) -> Callable:
    """Let ``command`` take option groups: each parameter annotated with a group dataclass becomes that
    group's options on the command line, packed into the dataclass when the command runs."""
    hints = typing.get_type_hints(command, include_extras=True)
    params, groups = [], {}
    for param in inspect.signature(command).parameters.values():
        kind = hints.get(param.name)
        if dataclasses.is_dataclass(kind):
            groups[param.name] = (kind, _group_params(kind))
            params += groups[param.name][1]
        else:
            params.append(param.replace(annotation=kind, kind=inspect.Parameter.KEYWORD_ONLY))
    _check_unique(command, params)

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        for name, (kind, fields) in groups.items():
            values[name] = kind(**{p.name: values.pop(p.name) for p in fields})
        return command(**values)

    del run.__wrapped__  # typer must read the spread signature below, not the original
    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def _group_params(kind: type) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(kind, include_extras=True)
    out = []
    for f in dataclasses.fields(kind):
        default = f.default
        if default is dataclasses.MISSING:
            default = inspect.Parameter.empty if f.default_factory is dataclasses.MISSING else f.default_factory()
        out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=hints[f.name]))
    return out


def _check_unique(command: Callable, params: list[inspect.Parameter]) -> None:
    names = [p.name for p in params]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"{command.__name__}: option(s) {twice} come from more than one group")


@dataclass
class GenerationOptions:
    """How texts are generated and relabeled (augment)."""

    per_class: Annotated[Optional[int], typer.Option("--per-class", help="Generated examples to keep per class "
                                                     "(default 10).")] = None
    texts_per_call: Annotated[Optional[int], typer.Option("--texts-per-call", help="Texts asked for in one "
                                                          "generation call (default 3).")] = None
    group_size: Annotated[Optional[int], typer.Option("--group-size", help="Classes shown together in a "
                                                      "generation prompt (default 4).")] = None
    top_k: TopK = None
    majority_share: Annotated[Optional[float], typer.Option("--majority-share", help="Fix the majority share (1.0 = "
                              "no mixing) instead of drawing 0.5 + 0.5*Beta(5,2).")] = None
    no_relabel: Annotated[bool, typer.Option("--no-relabel", help="Keep labels as generated (the A1 "
                                             "ablation).")] = False
    describe: Annotated[Optional[str], typer.Option("--describe", help="missing (default): the LM writes absent "
                                                    "descriptions; always: it writes all of them.")] = None
    programs: Programs = None
    max_rounds: Annotated[Optional[int], typer.Option("--max-rounds", help="Generation rounds to fill per-class "
                                                      "quotas (default 3).")] = None
    attempts: Annotated[Optional[int], typer.Option("--attempts", help="Tries per LLM call before it is counted "
                                                    "and skipped (default 3).")] = None
    encoder: Encoder = None
    relabel_batch: RelabelBatch = None
    reask: Reask = None
    probe_per_class: ProbePerClass = None
    task: Annotated[Optional[str], typer.Option("--task", help="One sentence saying what the texts are and what the "
                                                "classes tell apart (default: the dataset's task.txt or built-in "
                                                "one, else written by the LM).")] = None
    calibrate: Annotated[Optional[str], typer.Option("--calibrate", help="How the relabel call's class probabilities "
                         "are calibrated over the run's texts: batch (default; measured best: "
                         "evals/results/relabel_quality.md), content-free (3 extra calls per candidate set) or "
                         "none.")] = None
    layout: Annotated[Optional[str], typer.Option("--layout", help="What a relabel prompt shows before the text: "
                      "candidates (the paper's: the candidates' cards and seeds; default, the most accurate), "
                      "cards (every card with its seeds: one cached prefix), hybrid or shared "
                      "(evals/results/relabel_quality.md).")] = None
    no_decontaminate: Annotated[bool, typer.Option("--no-decontaminate", help="Keep generated texts found in the "
                                "dataset's test split (they are still counted in summary.json).")] = False

    def config_fields(self) -> dict[str, Any]:
        """AugmentConfig fields that were given."""
        out = {k: v for k, v in given(self).items()
               if k not in ("majority_share", "no_relabel", "programs", "no_decontaminate")}
        if self.no_decontaminate:
            out["decontaminate"] = False
        if self.majority_share is not None:
            out["fixed_share"] = self.majority_share
        if self.no_relabel:
            out["relabel"] = False
        return out


def budget_fields(budget: BudgetOptions) -> dict[str, Any]:
    """AugmentConfig / CompileConfig fields of the budget group that were given."""
    out = given(budget)
    if "threads" in out:
        out["num_threads"] = out.pop("threads")
    return out
