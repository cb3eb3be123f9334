"""The dry run: how many LLM calls and tokens a grid will spend, and what that costs, before anything runs.

Calls are counted from the plan itself (the mix plan, the relabel quota, the teacher's test set, the classes
without a description). Prompt tokens come from formatting real prompts with the adapter the run would use
(without compiled demos) and counting them with litellm's tokenizer for the model; completion tokens are an
estimate from the seed texts' length. Generation may take extra rounds when answers are unusable, so its
upper bound (``max_rounds`` x round one) is printed too. The price uses litellm's price table; local models
have none. Nothing is sent to the LM and no server is started.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import FewShotSplit, few_shot_split
from promptmix_dspy.experiments.methods import METHODS
from promptmix_dspy.experiments.spec import ExperimentSpec
from promptmix_dspy.experiments.teacher import teacher_test_set
from promptmix_dspy.llm.adapters import ADAPTERS
from promptmix_dspy.llm.settings import estimate_price
from promptmix_dspy.method.mixing import mix_plan
from promptmix_dspy.method.modules import share_phrase
from promptmix_dspy.method.signatures import (
    ClassCard,
    DescribeClass,
    GenerateBorderlineExamples,
    relabel_signature_for,
    with_task,
)

if TYPE_CHECKING:
    from promptmix_dspy.experiments.grid import GridSpec

__all__ = ["Estimate", "embedded_model_name", "estimate_grid", "format_estimate"]

logger = logging.getLogger(__name__)
SAMPLE = 40  # prompts formatted per stage to measure the mean prompt length


@dataclass
class Estimate:
    dataset: str
    stage: str
    calls: int
    max_calls: int
    prompt_tokens: int
    completion_tokens: int


def estimate_grid(grid: "GridSpec") -> list[Estimate]:
    """Planned LLM calls and tokens per dataset and stage, summed over the grid's seeds and generations, and
    over the second rounds (a2fb: the probe and round 2, the cell's own LLM work beside the shared round 1)."""
    out: list[Estimate] = []
    for dataset in grid.datasets:
        totals: dict[str, Estimate] = {}
        for spec in _llm_cells(grid, dataset):
            for est in _cell_estimates(spec):
                _add(totals, est)
        for spec in grid.cells():
            if spec.dataset == dataset and METHODS[spec.method].rounds == 2:
                for est in _second_round_estimates(spec):
                    _add(totals, est)
        out += list(totals.values())
    return out


def _llm_cells(grid: "GridSpec", dataset: str) -> list[ExperimentSpec]:
    """One cell per (seed, generation) plus the teacher cells: what actually calls the LM."""
    seen, cells = set(), []
    for spec in grid.cells():
        method = METHODS[spec.method]
        key = (spec.seed, method.generation or ("teacher" if method.teacher else None))
        if spec.dataset == dataset and key[1] and key not in seen:
            seen.add(key)
            cells.append(spec)
    return cells


def _add(totals: dict[str, Estimate], est: Estimate) -> None:
    if est.stage not in totals:
        totals[est.stage] = Estimate(est.dataset, est.stage, 0, 0, 0, 0)
    t = totals[est.stage]
    t.calls, t.max_calls = t.calls + est.calls, t.max_calls + est.max_calls
    t.prompt_tokens += est.prompt_tokens
    t.completion_tokens += est.completion_tokens


def _cell_estimates(spec: ExperimentSpec) -> list[Estimate]:
    ds = load_dataset(spec.dataset, data_dir=spec.data_dir)
    split = few_shot_split(ds, spec.shots_used, spec.seed)
    ctx = _Context(spec, split)
    method = METHODS[spec.method]
    if method.teacher:
        texts = [ex.text for ex in teacher_test_set(split.test, spec.teacher_test_limit)]
        return [ctx.describe(), ctx.relabel("teacher", texts)]
    seeds = [ex.text for ex in split.seeds]
    return [ctx.describe(), ctx.generate(method.generation),
            ctx.relabel("relabel", seeds, calls=spec.per_class * len(split.labels))]


def _second_round_estimates(spec: ExperimentSpec) -> list[Estimate]:
    """The probe (probe_size texts per class) and round 2 (as many calls as round 1 planned), each generated and
    relabeled; round 2's calls are shaped like round 1's (their pairs are known only once the probe is in)."""
    from promptmix_dspy.experiments.feedback import PROBE_START, ROUND2_START, probe_size

    split = few_shot_split(load_dataset(spec.dataset, data_dir=spec.data_dir), spec.shots_used, spec.seed)
    ctx, config = _Context(spec, split), spec.augment_config(METHODS[spec.method].generation or "mix")
    seeds = [ex.text for ex in split.seeds]
    out = []
    for stage, per_class, start in (("probe", probe_size(config), PROBE_START),
                                    ("round 2", config.per_class, ROUND2_START)):
        plan = mix_plan(split.labels, per_class, config.seed, texts_per_call=config.texts_per_call,
                        group_size=config.group_size, fixed_share=config.fixed_share, start_index=start)
        out += [ctx.generate_plan(f"generate ({stage})", plan, config),
                ctx.relabel(f"relabel ({stage})", seeds, calls=len(plan) * config.texts_per_call)]
    return out


class _Context:
    """Formats prompts for one cell the way the run would, and counts their tokens."""

    def __init__(self, spec: ExperimentSpec, split: FewShotSplit):
        settings = spec.lm_settings()
        self.spec, self.split = spec, split
        self.model = settings.model or embedded_model_name(settings.local_model)
        name = settings.adapter if settings.adapter != "auto" else ("llama-cpp" if settings.embedded else "json")
        self.adapter = ADAPTERS[name]()
        seeds = split.seeds_by_label()
        self.cards = {label: ClassCard(name=label, description=split.dataset.descriptions.get(label, label),
                                       examples=seeds[label]) for label in split.labels}
        self.text_tokens = statistics.fmean(self.tokens([{"role": "user", "content": t}]) for t in
                                            [ex.text for ex in split.seeds])

    def tokens(self, messages: list[dict]) -> int:
        import litellm

        return litellm.token_counter(model=self.model, messages=messages)

    def prompt(self, signature: Any, inputs: dict) -> int:
        return self.tokens(self.adapter.format(signature, demos=[], inputs=inputs))

    def describe(self) -> Estimate:
        todo = [label for label in self.split.labels if label not in self.split.dataset.descriptions]
        prompts = [self.prompt(DescribeClass, {"class_name": label, "examples": self.cards[label].examples,
                                               "other_classes": [x for x in self.split.labels if x != label]})
                   for label in todo]
        return Estimate(self.spec.dataset, "describe", len(todo), len(todo), sum(prompts), 50 * len(todo))

    def generate(self, generation: str) -> Estimate:
        config = self.spec.augment_config(generation)
        plan = mix_plan(self.split.labels, config.per_class, config.seed, texts_per_call=config.texts_per_call,
                        group_size=config.group_size, fixed_share=config.fixed_share)
        return self.generate_plan(f"generate ({generation})", plan, config)

    def generate_plan(self, stage: str, plan: list, config: Any) -> Estimate:
        signature = with_task(GenerateBorderlineExamples, self.split.dataset.task)
        prompts = [self.prompt(signature, self._generation_inputs(call)) for call in plan]
        completion = int(config.texts_per_call * (self.text_tokens + 4) + 10)
        asks = 1 + config.reask  # a re-ask for the texts clean-up dropped is one more request of the same call
        return Estimate(self.spec.dataset, stage, len(plan), len(plan) * config.max_rounds * asks,
                        sum(prompts), completion * len(plan))

    def _generation_inputs(self, call: Any) -> dict:
        return {"class_cards": [self.cards[c] for c in call.group], "majority_class": call.majority,
                "minority_class": call.minority or "none", "num_texts": call.num_texts,
                "majority_share": share_phrase(call.majority, call.minority, call.majority_share),
                "already_written": []}

    def relabel(self, stage: str, texts: list[str], calls: int | None = None) -> Estimate:
        """Mean prompt over a sample of texts, formatted as the Relabeler sends it (its candidates, its cards
        without examples, the seeds as one worked example), one text per call times ``relabel_batch``."""
        from promptmix_dspy.method.modules import Relabeler

        relabeler = Relabeler(list(self.cards.values()), task=self.split.dataset.task, top_k=self.spec.top_k)
        batch = max(1, self.spec.relabel_batch)
        sample = [texts[i:i + batch] for i in range(0, min(len(texts), SAMPLE), batch)] or [[""]]
        sizes = []
        for chunk in sample:
            names = relabeler._candidates(chunk)
            cards = relabeler._cards(names, chunk)
            signature = relabel_signature_for(names, relabeler.relabel.signature)
            inputs = {"candidate_classes": [c.model_copy(update={"examples": []}) for c in cards], "texts": chunk}
            sizes.append(self.tokens(self.adapter.format(signature, demos=relabeler._demos(cards, chunk),
                                                         inputs=inputs)))
        n = len(texts) if calls is None else calls
        n_calls = -(-n // batch)
        names = self.split.labels
        completion = 6 + batch * (4 + max(self.tokens([{"role": "user", "content": label}]) for label in names))
        return Estimate(self.spec.dataset, stage, n_calls, n_calls, int(statistics.fmean(sizes) * n_calls),
                        completion * n_calls)


def embedded_model_name(local_model: str | None = None) -> str:
    """The litellm name runs give the embedded server: hosted_vllm/<registry name or the GGUF file's stem>."""
    import os
    from pathlib import Path

    from promptmix_dspy.llm.models import DEFAULT_LOCAL_MODEL, LOCAL_MODEL_ENV

    choice = local_model or os.environ.get(LOCAL_MODEL_ENV) or DEFAULT_LOCAL_MODEL
    return f"hosted_vllm/{Path(choice).stem if choice.endswith('.gguf') else choice}"


def format_estimate(estimates: list[Estimate], model: str | None = None) -> str:
    """A table of calls and tokens per dataset and stage, the totals and the price."""
    model = model or embedded_model_name()
    lines = [f"{'dataset':<20} {'stage':<18} {'calls':>14} {'prompt tokens':>14} {'completion tokens':>18}"]
    for e in estimates:
        calls = f"{e.calls}" if e.calls == e.max_calls else f"{e.calls} (<= {e.max_calls})"
        lines.append(f"{e.dataset:<20} {e.stage:<18} {calls:>14} {e.prompt_tokens:>14,} {e.completion_tokens:>18,}")
    calls = sum(e.calls for e in estimates)
    prompt, completion = sum(e.prompt_tokens for e in estimates), sum(e.completion_tokens for e in estimates)
    lines.append(f"{'total':<39} {calls:>14} {prompt:>14,} {completion:>18,}")
    price = estimate_price(model, prompt, completion)
    lines.append(f"estimated price for {model}: " + (f"${price:.4f} (litellm's price table; more if generation "
                 f"needs extra rounds)" if price is not None else "unknown: the model is not in litellm's price "
                 "table (a local model costs only time)"))
    return "\n".join(lines)
