"""The command-line app: the only place that turns flags into config. Heavy imports live inside commands."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

import typer

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="PromptMix with DSPy: few labelled examples + an LLM -> a fast, cheap text classifier.")

# Shared option aliases, so every command spells them the same way.
DataDirOpt = typer.Option(None, "--data-dir", envvar="PROMPTMIX_DATA_DIR",
                          help="Folder with <dataset>/{train,test}.jsonl, labels.json, descriptions.json.")
SeedOpt = typer.Option(0, "--seed", help="One seed for every random choice.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Debug logging.")
DatasetOpt = typer.Option(..., "--dataset", "-d", help="Built-in name (trec6, subj, banking77, twitter_complaints), "
                          "a jsonl/json/csv file, or a folder with train/test files.")
TextColOpt = typer.Option("text", "--text-column", help="Text column of a user dataset.")
LabelColOpt = typer.Option("label", "--label-column", help="Label column of a user dataset.")
DescOpt = typer.Option(None, "--descriptions", help="JSON file mapping each label to a one-sentence description.")
ShotsOpt = typer.Option(2, "--shots", "-k", help="Labelled examples per class the method may see.")
LMOpt = typer.Option(None, "--lm", envvar="PROMPTMIX_LM", help="litellm model string (openai/gpt-4o-mini, "
                     "anthropic/..., ollama_chat/..., hosted_vllm/...). Default: the embedded SmolLM2 server.")
ApiBaseOpt = typer.Option(None, "--api-base", envvar="PROMPTMIX_API_BASE", help="Endpoint URL for --lm.")
ApiKeyEnvOpt = typer.Option(None, "--api-key-env", help="Name of the environment variable holding the API key "
                            "(litellm reads the provider's usual one by default). Never pass a key itself.")
AdapterOpt = typer.Option("auto", "--adapter", help="auto | chat | json | llama-cpp (JSON-schema constrained).")
MaxTokensOpt = typer.Option(256, "--max-tokens", help="Max completion tokens per call.")
NoCacheOpt = typer.Option(False, "--no-cache", help="Bypass DSPy's response cache.")
ServerParallelOpt = typer.Option(2, "--server-parallel", help="Parallel slots of the embedded server.")
ThreadsOpt = typer.Option(4, "--threads", help="LLM requests in flight.")
TimeoutOpt = typer.Option(None, "--timeout", help="Seconds one LLM request may take before it is retried "
                          "(default 120; raise it for a slow local model).")
RetriesOpt = typer.Option(None, "--num-retries", help="Transport retries of one LLM request, with backoff "
                          "(timeouts, 429, 5xx, broken connections; default 3).")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def serve(parallel: int = typer.Option(1, "--parallel", min=1, help="Requests answered at once (worker processes)."),
          port: Optional[int] = typer.Option(None, "--port", help="Public port on 127.0.0.1 (default: a free one)."),
          model_path: Optional[Path] = typer.Option(None, "--model-path", help="GGUF file (default: SmolLM2-135M)."),
          n_ctx: int = typer.Option(4096, "--n-ctx", min=256, help="Context length of each worker."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads per worker (cores // N)."),
          verbose: bool = VerboseOpt) -> None:
    """Serve the embedded LLM (llama.cpp, OpenAI-compatible) in the foreground until Ctrl-C."""
    import signal
    import time

    from promptmix_dspy.server import LocalServer

    _setup_logging(verbose)
    server = LocalServer(model_path=str(model_path) if model_path else None, parallel=parallel, port=port,
                         n_ctx=n_ctx, threads=threads)
    for sig in (signal.SIGINT, signal.SIGTERM):  # `kill` cleans up like Ctrl-C, also when run in background
        signal.signal(sig, signal.default_int_handler)
    try:
        with server:
            typer.echo(f"serving {server.alias} at {server.base_url} ({parallel} at a time)\n"
                       f"use: --lm {server.model} --api-base {server.base_url}\nCtrl-C to stop")
            while True:
                server.check()
                time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopped")
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        _fail(exc)


def _lm_settings(lm: Optional[str], api_base: Optional[str], api_key_env: Optional[str], adapter: str,
                 max_tokens: int, no_cache: bool, server_parallel: int, timeout: Optional[float] = None,
                 num_retries: Optional[int] = None):
    from promptmix_dspy.lm import LMSettings

    transport = {k: v for k, v in {"timeout": timeout, "num_retries": num_retries}.items() if v is not None}
    return LMSettings(model=lm, api_base=api_base, api_key_env=api_key_env, adapter=adapter,
                      max_tokens=max_tokens, cache=not no_cache, server_parallel=server_parallel, **transport)


def _load(dataset: str, data_dir: Optional[Path], text_column: str, label_column: str,
          descriptions: Optional[Path]):
    from promptmix_dspy.data import load_dataset

    return load_dataset(dataset, data_dir=data_dir, text_column=text_column, label_column=label_column,
                        descriptions=descriptions)


@app.command()
def augment(
    dataset: str = DatasetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (re-running resumes it)."),
    shots: int = ShotsOpt,
    seed: int = SeedOpt,
    per_class: int = typer.Option(10, "--per-class", help="Generated examples to keep per class."),
    texts_per_call: int = typer.Option(3, "--texts-per-call", help="Texts asked for in one generation call."),
    group_size: int = typer.Option(4, "--group-size", help="Classes shown together in a generation prompt."),
    top_k: int = typer.Option(5, "--top-k", help="Candidate classes offered to the relabeler."),
    majority_share: Optional[float] = typer.Option(None, "--majority-share", help="Fix the majority share "
                                                   "(1.0 = no mixing) instead of drawing 0.5 + 0.5*Beta(5,2)."),
    no_relabel: bool = typer.Option(False, "--no-relabel", help="Keep labels as generated (the A1 ablation)."),
    describe: str = typer.Option("missing", "--describe", help="missing: LM writes absent descriptions; always."),
    programs: Optional[Path] = typer.Option(None, "--programs", help="Folder of compiled programs to use."),
    max_rounds: int = typer.Option(3, "--max-rounds", help="Generation rounds to fill per-class quotas."),
    attempts: int = typer.Option(3, "--attempts", help="Tries per LLM call before it is counted and skipped."),
    max_errors: Optional[int] = typer.Option(None, "--max-errors", help="Stop cleanly after this many failures."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="Stop cleanly at this estimated USD cost."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Sentence encoder for top-k (name or dir)."),
    threads: int = ThreadsOpt,
    data_dir: Optional[Path] = DataDirOpt,
    text_column: str = TextColOpt,
    label_column: str = LabelColOpt,
    descriptions: Optional[Path] = DescOpt,
    lm: Optional[str] = LMOpt,
    api_base: Optional[str] = ApiBaseOpt,
    api_key_env: Optional[str] = ApiKeyEnvOpt,
    adapter: str = AdapterOpt,
    max_tokens: int = MaxTokensOpt,
    no_cache: bool = NoCacheOpt,
    server_parallel: int = ServerParallelOpt,
    timeout: Optional[float] = TimeoutOpt,
    num_retries: Optional[int] = RetriesOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Generate borderline examples, relabel them, and write OUT/augmented.jsonl with provenance."""
    _setup_logging(verbose)
    from promptmix_dspy.augment import AugmentConfig, run_augment
    from promptmix_dspy.lm import open_lm
    from promptmix_dspy.runner import RunStopped

    try:
        config = AugmentConfig(shots=shots, seed=seed, per_class=per_class, texts_per_call=texts_per_call,
                               group_size=group_size, top_k=top_k, fixed_share=majority_share,
                               relabel=not no_relabel, describe=describe, max_rounds=max_rounds, attempts=attempts,
                               num_threads=threads, max_errors=max_errors, max_cost=max_cost, encoder=encoder)
        settings = _lm_settings(lm, api_base, api_key_env, adapter, max_tokens, no_cache, server_parallel, timeout,
                                num_retries)
        ds = _load(dataset, data_dir, text_column, label_column, descriptions)
        with open_lm(settings) as handle:
            result = run_augment(ds, out, config, handle, programs=programs)
    except RunStopped as exc:
        typer.secho(f"stopped: {exc}. Everything finished so far is saved in {out}; run the same command "
                    f"to resume.", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=3)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    _print_summary(result.summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    llm = summary["llm"]
    cost = "unknown (not in litellm's price table)" if llm["cost_usd"] is None else f"${llm['cost_usd']:.4f}"
    share = summary["relabeled_share"]
    typer.echo(f"kept {summary['kept']} examples ({summary['kept_per_class']})")
    typer.echo(f"dropped: {summary['dropped'] or 'none'}")
    typer.echo(f"relabeled: {'n/a' if share is None else f'{share:.1%}'}")
    session = summary.get("this_session") or {}
    typer.echo(f"LLM calls: {llm['llm_calls']} ({llm['failed_units']} failed), tokens: {llm['prompt_tokens']} "
               f"prompt + {llm['completion_tokens']} completion, cost: {cost}")
    if session.get("llm_calls", 0) < llm["llm_calls"]:  # a resumed run: the rest came from the journals
        typer.echo(f"this session: {session.get('llm_calls', 0)} LLM calls ({session.get('retries', 0)} retries); "
                   f"the others were read from the run folder")
    typer.echo(f"wrote {out / 'augmented.jsonl'} and {out / 'config.json'}")


@app.command()
def describe(
    dataset: str = DatasetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder; descriptions.json is written there."),
    shots: int = ShotsOpt,
    seed: int = SeedOpt,
    threads: int = ThreadsOpt,
    data_dir: Optional[Path] = DataDirOpt,
    text_column: str = TextColOpt,
    label_column: str = LabelColOpt,
    lm: Optional[str] = LMOpt,
    api_base: Optional[str] = ApiBaseOpt,
    api_key_env: Optional[str] = ApiKeyEnvOpt,
    adapter: str = AdapterOpt,
    max_tokens: int = MaxTokensOpt,
    no_cache: bool = NoCacheOpt,
    server_parallel: int = ServerParallelOpt,
    timeout: Optional[float] = TimeoutOpt,
    num_retries: Optional[int] = RetriesOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Have the LM write a one-sentence description of every class from its name and seed examples."""
    _setup_logging(verbose)
    from promptmix_dspy.augment import AugmentConfig
    from promptmix_dspy.data import few_shot_split
    from promptmix_dspy.lm import open_lm
    from promptmix_dspy.runner import Budget
    from promptmix_dspy.steps import describe_classes

    try:
        config = AugmentConfig(shots=shots, seed=seed, describe="always", num_threads=threads)
        settings = _lm_settings(lm, api_base, api_key_env, adapter, max_tokens, no_cache, server_parallel, timeout,
                                num_retries)
        split = few_shot_split(_load(dataset, data_dir, text_column, label_column, None), shots, seed)
        out.mkdir(parents=True, exist_ok=True)
        with open_lm(settings) as handle:
            cards = describe_classes(split, config, handle, out, Budget())
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    for card in cards:
        typer.echo(f"{card.name}: {card.description}")
    typer.echo(f"wrote {out / 'descriptions.json'}")


# ----------------------------------------------------------------------------------------------------------
# The student: train, predict, evaluate


@app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Folder for the trained student."),
    train_file: Optional[Path] = typer.Option(None, "--train", help="augmented.jsonl; omit it to train on the "
                                              "seeds alone (the baseline)."),
    seeds_from: Optional[Path] = typer.Option(None, "--seeds-from", help="Run folder: seeds.jsonl, labels.json, "
                                              "config.json."),
    labels_file: Optional[Path] = typer.Option(None, "--labels", help="labels.json, when there is no run folder."),
    label_field: str = typer.Option("label", "--label-field", help="label (relabeled) or generated_for (labels "
                                    "as generated: the paper's A1 ablation)."),
    student: str = typer.Option("all-MiniLM-L6-v2", "--student", help="Hub name or local model folder."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset whose defaults apply (banking77 has "
                                          "its own lr); default: the run's config.json."),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio"),
    max_length: Optional[int] = typer.Option(None, "--max-length"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto, bf16, fp16 or no (CUDA only)."),
    seed: int = SeedOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Fine-tune a student on the seeds plus an augmented file; save weights, tokenizer, labels and config."""
    _setup_logging(verbose)
    try:
        from promptmix_dspy.train import TrainConfig, train_student

        rows, labels, run_dataset, provenance = _training_set(train_file, seeds_from, labels_file, label_field)
        config = TrainConfig.for_dataset(dataset or run_dataset, student=student, epochs=epochs, seed=seed,
                                         batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                         warmup_ratio=warmup_ratio, max_length=max_length, device=device,
                                         precision=precision)
        path = train_student(rows, labels, config, out, provenance)
    except (ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f"trained on {len(rows)} rows ({provenance['seeds']} seeds + {provenance['augmented']} augmented) "
               f"-> {path}")


def _training_set(train_file: Optional[Path], seeds_from: Optional[Path], labels_file: Optional[Path],
                  label_field: str) -> tuple[list, list[str], Optional[str], dict]:
    from promptmix_dspy.train import read_labels, read_rows, read_run

    if label_field not in ("label", "generated_for"):
        raise ValueError(f"--label-field must be 'label' or 'generated_for', got {label_field!r}")
    if seeds_from is None and labels_file is None:
        raise ValueError("give --seeds-from RUN_FOLDER (seeds and labels) or --labels labels.json")
    run = read_run(seeds_from) if seeds_from is not None else None
    labels = run.labels if run else read_labels(labels_file)
    seeds = run.seeds if run else []
    augmented = read_rows(train_file, labels, label_field) if train_file is not None else []
    if not seeds and not augmented:
        raise ValueError("nothing to train on: give --seeds-from RUN_FOLDER and/or --train FILE")
    provenance = {"seeds": len(seeds), "augmented": len(augmented), "seeds_from": str(seeds_from or ""),
                  "train_file": str(train_file or ""), "label_field": label_field}
    return seeds + augmented, labels, run.dataset if run else None, provenance


@app.command("predict")
def predict_cmd(
    model: Path = typer.Option(..., "--model", help="A trained student folder."),
    input_file: Path = typer.Option(..., "--input", help=".jsonl with a text field, or .txt with one text a line."),
    output: Optional[Path] = typer.Option(None, "--output", help="Default: <input>.predictions.jsonl."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    verbose: bool = VerboseOpt,
) -> None:
    """Label texts with a trained student; writes one {"text", "prediction"} per line."""
    _setup_logging(verbose)
    try:
        import json
        import time

        from promptmix_dspy.student import load_student, predict, read_texts

        texts, student = read_texts(input_file), load_student(model)
        started = time.perf_counter()
        labels = predict(student, texts, batch_size=batch_size)
        seconds = time.perf_counter() - started
        output = output or input_file.with_name(input_file.stem + ".predictions.jsonl")
        output.write_text("".join(json.dumps({"text": t, "prediction": p}, ensure_ascii=False) + "\n"
                                  for t, p in zip(texts, labels)), encoding="utf-8")
    except (ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f"{len(texts)} texts in {seconds:.2f} s ({len(texts) / max(seconds, 1e-9):.0f} texts/s) -> {output}")


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="A trained student folder."),
    dataset: str = typer.Option(..., "--dataset", help="Built-in name or a data file/folder."),
    split: str = typer.Option("test", "--split", help="test or train."),
    data_dir: Optional[Path] = DataDirOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Default: <model>/eval-<dataset>-<split>."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    verbose: bool = VerboseOpt,
) -> None:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix -> report.json, report.md, confusion.png."""
    _setup_logging(verbose)
    try:
        from promptmix_dspy.data import load_dataset
        from promptmix_dspy.evaluate import evaluate_model

        if split not in ("test", "train"):
            raise ValueError(f"--split must be 'test' or 'train', got {split!r}")
        data = load_dataset(dataset, data_dir=data_dir)
        out = out or model / f"eval-{data.name}-{split}"
        meta = {"model": str(model), "dataset": data.name, "split": split}
        report = evaluate_model(model, getattr(data, split), out, batch_size=batch_size, meta=meta)
    except (ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  ({report['n']} examples, "
               f"{report['texts_per_second']:.0f} texts/s) -> {out / 'report.md'}")


@app.command("compile")
def compile_command(
    dataset: str = DatasetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the compiled programs (JSON) and meta.json."),
    program: str = typer.Option("all", "--program", help="relabeler | generator | all."),
    optimizer: str = typer.Option("bootstrap", "--optimizer", help="labeled | bootstrap | random-search | mipro "
                                  "| gepa."),
    opt: list[str] = typer.Option([], "--opt", help="Optimizer setting KEY=VALUE (JSON value), repeatable: "
                                  "--opt max_bootstrapped_demos=2 --opt auto=medium."),
    dev_per_class: int = typer.Option(0, "--dev-per-class", help="Dev examples per class drawn from the rest of "
                                      "train; 0 scores the relabeler leave-one-out over the seeds."),
    generator_calls: int = typer.Option(2, "--generator-calls", help="Training mix calls per class."),
    generator_dev_calls: int = typer.Option(1, "--generator-dev-calls", help="Dev mix calls per class."),
    top_k: int = typer.Option(5, "--top-k", help="Candidate classes offered to the relabeler."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Sentence encoder for top-k (name or dir)."),
    reflection_lm: Optional[str] = typer.Option(None, "--reflection-lm", help="litellm model string of the LM "
                                                "that rewrites instructions (gepa only)."),
    reflection_api_base: Optional[str] = typer.Option(None, "--reflection-api-base", help="Endpoint URL for "
                                                      "--reflection-lm."),
    keep_worse: bool = typer.Option(False, "--keep-worse", help="Save a compiled program even when it scores "
                                    "lower on dev than the uncompiled one (by default the uncompiled is saved)."),
    shots: int = ShotsOpt,
    seed: int = SeedOpt,
    threads: int = ThreadsOpt,
    data_dir: Optional[Path] = DataDirOpt,
    text_column: str = TextColOpt,
    label_column: str = LabelColOpt,
    descriptions: Optional[Path] = DescOpt,
    lm: Optional[str] = LMOpt,
    api_base: Optional[str] = ApiBaseOpt,
    api_key_env: Optional[str] = ApiKeyEnvOpt,
    adapter: str = AdapterOpt,
    max_tokens: int = MaxTokensOpt,
    no_cache: bool = NoCacheOpt,
    server_parallel: int = ServerParallelOpt,
    timeout: Optional[float] = TimeoutOpt,
    num_retries: Optional[int] = RetriesOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Optimize the relabeler and/or the generator against a dev split and save them for `augment --programs`."""
    _setup_logging(verbose)
    import contextlib

    from promptmix_dspy.lm import LMSettings, open_lm
    from promptmix_dspy.optimize import CompileConfig, check_reflection_lm, compile_programs
    from promptmix_dspy.optimizers import parse_settings

    try:
        config = CompileConfig(program=program, optimizer=optimizer, settings=parse_settings(opt), shots=shots,
                               seed=seed, dev_per_class=dev_per_class, top_k=top_k, encoder=encoder,
                               generator_calls=generator_calls, generator_dev_calls=generator_dev_calls,
                               num_threads=threads, keep_worse=keep_worse)
        check_reflection_lm(config, reflection_lm)
        settings = _lm_settings(lm, api_base, api_key_env, adapter, max_tokens, no_cache, server_parallel, timeout,
                                num_retries)
        ds = _load(dataset, data_dir, text_column, label_column, descriptions)
        with contextlib.ExitStack() as stack:
            reflection = None
            if reflection_lm:
                reflection = stack.enter_context(open_lm(LMSettings(
                    model=reflection_lm, api_base=reflection_api_base, api_key_env=api_key_env,
                    max_tokens=max(max_tokens, 4096), cache=not no_cache))).lm
            handle = stack.enter_context(open_lm(settings))
            results = compile_programs(ds, out, config, handle, reflection_lm=reflection)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    for name, result in results.items():
        typer.echo(f"{name}: {result.optimizer}, dev {result.metric} ({result.dev_mode}, n={result.dev_size}) "
                   f"{result.dev_before:.3f} -> {result.dev_after:.3f} in {result.seconds:.0f}s; saved the "
                   f"{result.kept} program")
    typer.echo(f"wrote {out} (use: promptmix augment --programs {out} ...)")


# ----------------------------------------------------------------------------------------------------------
# Experiments: one run, and the benchmark grid (experiment.py, grid.py, report.py)

OutRunOpt = typer.Option(None, "--out", "-o", help="Run folder (default runs/<dataset>-<method>-seed<k>); "
                         "re-running it redoes no finished step.")
SpecOpt = typer.Option(None, "--config", "-c", help="Experiment spec (TOML, e.g. evals/trec6.toml); flags "
                       "override it.")
MethodsHelp = "baseline, a1, a2 (PromptMix), llm (the teacher), eda, nomix, baseline5"
PerClassOpt = typer.Option(None, "--per-class", help="Generated examples to keep per class (spec default 10).")
TeacherLimitOpt = typer.Option(None, "--teacher-test-limit", help="The llm method labels a fixed seeded sample "
                               "of this many test texts (default: all).")
StudentOpt = typer.Option(None, "--student", help="Student model: hub name or folder (default all-MiniLM-L6-v2).")
EpochsOpt = typer.Option(None, "--epochs", help="Student epochs (default 5).")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the planned LLM calls, tokens and price, run nothing.")
ShotsOverrideOpt = typer.Option(None, "--shots", "-k", help="Labelled examples per class (default 2).")
ProgramsOpt = typer.Option(None, "--programs", help="Compiled programs (promptmix compile) for generation and "
                           "relabeling; {dataset} in the path becomes each dataset's name: programs/{dataset}.")


def _csv(text: Optional[str], cast: type = str) -> Optional[list]:
    return [cast(x.strip()) for x in text.split(",") if x.strip()] if text else None


def _lm_overrides(lm: Optional[str], api_base: Optional[str], api_key_env: Optional[str], adapter: str,
                  max_tokens: int, no_cache: bool, server_parallel: int, timeout: Optional[float] = None,
                  num_retries: Optional[int] = None) -> dict:
    """LMSettings fields given on the command line (flags left at their default do not override a spec)."""
    given = {"model": lm, "api_base": api_base, "api_key_env": api_key_env, "timeout": timeout,
             "num_retries": num_retries,
             "adapter": None if adapter == "auto" else adapter, "max_tokens": None if max_tokens == 256 else max_tokens,
             "cache": False if no_cache else None, "server_parallel": None if server_parallel == 2 else server_parallel}
    return {k: v for k, v in given.items() if v is not None}


def _spec_overrides(shots: Optional[int], per_class: Optional[int], teacher_test_limit: Optional[int],
                    student: Optional[str], epochs: Optional[int], threads: int, data_dir: Optional[Path],
                    lm: dict, programs: Optional[str] = None) -> dict:
    student_fields = {k: v for k, v in {"student": student, "epochs": epochs}.items() if v is not None}
    return {"shots": shots, "per_class": per_class, "teacher_test_limit": teacher_test_limit, "programs": programs,
            "threads": None if threads == 4 else threads, "data_dir": str(data_dir) if data_dir else None,
            "student": student_fields or None, "lm": lm or None}


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """`kill` stops a long run like Ctrl-C (in-flight answers journaled, the embedded server stopped), also when
    started in the background; the previous handlers come back afterwards."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in before:
        signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _print_estimate(grid) -> None:
    from promptmix_dspy.estimate import estimate_grid, format_estimate

    typer.echo(format_estimate(estimate_grid(grid), grid.cells()[0].lm_settings().model))


@app.command("run")
def run_command(
    config: Optional[Path] = SpecOpt,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset (overrides the spec)."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help=f"One of: {MethodsHelp}."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the few-shot draw, mixing and student."),
    out: Optional[Path] = OutRunOpt,
    shots: Optional[int] = ShotsOverrideOpt,
    per_class: Optional[int] = PerClassOpt,
    teacher_test_limit: Optional[int] = TeacherLimitOpt,
    student: Optional[str] = StudentOpt,
    epochs: Optional[int] = EpochsOpt,
    programs: Optional[str] = ProgramsOpt,
    dry_run: bool = DryRunOpt,
    threads: int = ThreadsOpt,
    data_dir: Optional[Path] = DataDirOpt,
    lm: Optional[str] = LMOpt,
    api_base: Optional[str] = ApiBaseOpt,
    api_key_env: Optional[str] = ApiKeyEnvOpt,
    adapter: str = AdapterOpt,
    max_tokens: int = MaxTokensOpt,
    no_cache: bool = NoCacheOpt,
    server_parallel: int = ServerParallelOpt,
    timeout: Optional[float] = TimeoutOpt,
    num_retries: Optional[int] = RetriesOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """One experiment: few-shot split -> descriptions -> generate -> relabel -> train -> evaluate, in one folder."""
    _setup_logging(verbose)
    from promptmix_dspy.experiment import ExperimentSpec, load_spec, run_experiment
    from promptmix_dspy.grid import GridSpec
    from promptmix_dspy.runner import RunStopped

    try:
        lm_fields = _lm_overrides(lm, api_base, api_key_env, adapter, max_tokens, no_cache, server_parallel,
                                  timeout, num_retries)
        overrides = {"dataset": dataset, "method": method, "seed": seed,
                     **_spec_overrides(shots, per_class, teacher_test_limit, student, epochs, threads, data_dir,
                                       lm_fields, programs)}
        spec = load_spec(config, **overrides) if config else ExperimentSpec(**_given(overrides, "dataset"))
        if dry_run:
            base = {k: v for k, v in vars(spec).items() if k not in ("dataset", "method", "seed")}
            return _print_estimate(GridSpec([spec.dataset], [spec.method], [spec.seed], base))
        out = out or Path("runs") / f"{spec.dataset}-{spec.method}-seed{spec.seed}"
        with _sigterm_as_interrupt():
            row = run_experiment(spec, out)
    except KeyboardInterrupt:
        typer.secho(f"interrupted: finished steps are saved in {out}; run the same command to resume.",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=130)
    except RunStopped as exc:
        typer.secho(f"stopped: {exc}. Finished steps are saved in {out}; run the same command to resume.",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=3)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    _print_row(row, out)


def _given(overrides: dict, required: str) -> dict:
    if overrides.get(required) is None:
        raise ValueError(f"give --config FILE or --{required}")
    return {k: v for k, v in overrides.items() if v is not None}


def _print_row(row: dict, out: Path) -> None:
    from promptmix_dspy.report import format_cost

    typer.echo(f"{row['dataset']} / {row['method']} / seed {row['seed']}: accuracy {row['accuracy']:.4f}, "
               f"macro-F1 {row['macro_f1']:.4f} on {row['n_test']} test texts")
    typer.echo(format_cost(row))
    typer.echo(f"wrote {out / 'result.json'} and {out / 'eval'}")


@app.command()
def bench(
    out: Path = typer.Option(..., "--out", "-o", help="Grid folder; re-running skips finished cells."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Grid spec (TOML with a \\[grid] table, "
                                          "e.g. evals/bench_smollm2.toml); flags override it."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated: trec6,subj,banking77,"
                                           "twitter_complaints (or dataset paths)."),
    methods: Optional[str] = typer.Option(None, "--methods", help=f"Comma-separated rows: {MethodsHelp}."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds (default 0,1,2)."),
    shots: Optional[int] = ShotsOverrideOpt,
    per_class: Optional[int] = PerClassOpt,
    teacher_test_limit: Optional[int] = TeacherLimitOpt,
    student: Optional[str] = StudentOpt,
    epochs: Optional[int] = EpochsOpt,
    programs: Optional[str] = ProgramsOpt,
    dry_run: bool = DryRunOpt,
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Write results.{jsonl,md} and the plots "
                                              "here instead of OUT (e.g. evals/results/NAME to commit them)."),
    threads: int = ThreadsOpt,
    data_dir: Optional[Path] = DataDirOpt,
    lm: Optional[str] = LMOpt,
    api_base: Optional[str] = ApiBaseOpt,
    api_key_env: Optional[str] = ApiKeyEnvOpt,
    adapter: str = AdapterOpt,
    max_tokens: int = MaxTokensOpt,
    no_cache: bool = NoCacheOpt,
    server_parallel: int = ServerParallelOpt,
    timeout: Optional[float] = TimeoutOpt,
    num_retries: Optional[int] = RetriesOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """The paper's table: datasets x methods x seeds, then results.{jsonl,md} and plots in OUT."""
    _setup_logging(verbose)
    import shlex
    import sys

    from promptmix_dspy.grid import load_grid, run_grid
    from promptmix_dspy.report import write_grid_report
    from promptmix_dspy.runner import RunStopped

    try:
        lm_fields = _lm_overrides(lm, api_base, api_key_env, adapter, max_tokens, no_cache, server_parallel,
                                  timeout, num_retries)
        grid = load_grid(config, datasets=_csv(datasets), methods=_csv(methods), seeds=_csv(seeds, int),
                         **_spec_overrides(shots, per_class, teacher_test_limit, student, epochs, threads, data_dir,
                                           lm_fields, programs))
        if dry_run:
            return _print_estimate(grid)
        with _sigterm_as_interrupt():
            rows = run_grid(grid, out)
        paths = write_grid_report(grid, out, rows, shlex.join(["promptmix", *sys.argv[1:]]), report_dir)
    except KeyboardInterrupt:
        typer.secho(f"interrupted: finished cells are saved in {out}; run the same command to resume.",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=130)
    except RunStopped as exc:
        typer.secho(f"stopped: {exc}. Finished cells are saved in {out}; run the same command to resume.",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=3)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    typer.echo(paths["table"])
    typer.echo(f"wrote {', '.join(str(p) for p in paths['files'])}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
