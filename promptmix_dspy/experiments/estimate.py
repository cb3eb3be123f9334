"""The dry run: how many LLM calls and tokens a grid will spend, and what that costs, before anything runs.

Calls are counted from the plan itself (the mix plan, the relabel quota, the teacher's test set, the classes
without a description). Prompt tokens come from formatting real prompts with the adapter the run would use
(without compiled demos) and counting them with litellm's tokenizer for the model; completion tokens are an
estimate from the seed texts' length. Generation may take extra rounds when answers are unusable, so its
upper bound (``max_rounds`` x round one) is printed too. The price uses litellm's price table; local models
have none. Nothing is sent to the LM and no server is started.

For the embedded server the time is estimated as well: consecutive prompts are formatted in the order the run
sends them and each is charged only what its server slot must evaluate (the part after the longest prefix it
shares with the prompts the slots hold), at the per-token speeds benchmarks/server_profile.py measured on 2 cores.
"""

from __future__ import annotations

import logging
import random
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import FewShotSplit, few_shot_split
from promptmix_dspy.experiments.methods import GENERATIONS, METHODS
from promptmix_dspy.experiments.spec import ExperimentSpec
from promptmix_dspy.experiments.teacher import teacher_test_set
from promptmix_dspy.llm.adapters import ADAPTERS
from promptmix_dspy.llm.batch import BATCH_DISCOUNT
from promptmix_dspy.llm.settings import estimate_price
from promptmix_dspy.method.mixing import mix_plan
from promptmix_dspy.method.modules import share_phrase
from promptmix_dspy.method.signatures import (
    ClassCard,
    DescribeClasses,
    GenerateBorderlineExamples,
    with_task,
)

if TYPE_CHECKING:
    from promptmix_dspy.experiments.grid import GridSpec

__all__ = ["Estimate", "embedded_model_name", "estimate_grid", "format_estimate"]

logger = logging.getLogger(__name__)
SAMPLE = 40  # prompts formatted per stage to measure the mean prompt length
# The embedded default on 2 cores (evals/results/server_profile.md): prompt tokens evaluated per second, and completion
# tokens per second with 2 requests decoded together.
PROMPT_TOKENS_PER_S, DECODE_TOKENS_PER_S = 60.0, 20.0
SLOTS = 2


@dataclass
class Estimate:
    dataset: str
    stage: str
    calls: int
    max_calls: int
    prompt_tokens: int
    completion_tokens: int
    evaluated_tokens: int = 0  # of the prompt tokens, those a server slot must evaluate (the rest is its cache)

    def seconds(self) -> float:
        """On the embedded server, 2 cores (benchmarks/server_profile.py): prompt tokens evaluated, then decoding."""
        return self.evaluated_tokens / PROMPT_TOKENS_PER_S + self.completion_tokens / DECODE_TOKENS_PER_S


def estimate_grid(grid: "GridSpec") -> list[Estimate]:
    """Planned LLM calls and tokens per dataset and stage, summed over the grid's seeds and generations, and
    over the second rounds (a2fb: the probe and round 2, the cell's own LLM work beside the shared round 1)."""
    out: list[Estimate] = []
    for dataset in grid.datasets:
        totals: dict[str, Estimate] = {}
        for kind, spec in _llm_cells(grid, dataset):
            for est in _cell_estimates(kind, spec):
                _add(totals, est)
        for spec in grid.cells():
            if spec.dataset == dataset and METHODS[spec.method].rounds == 2:
                for est in _second_round_estimates(spec):
                    _add(totals, est)
        out += list(totals.values())
    return out


def _llm_cells(grid: "GridSpec", dataset: str) -> list[ExperimentSpec]:
    """One cell per (seed, generation), per seed's teacher, per compiled relabeling: what calls the LM."""
    seen, cells = set(), []
    for spec in grid.cells():
        method = METHODS[spec.method]
        keys = [k for k in ((spec.seed, "gen", method.generation) if method.generation else None,
                            (spec.seed, "teacher", None) if method.teacher else None,
                            (spec.seed, "relabel", spec.method) if method.relabel_with else None) if k]
        for key in keys:
            if spec.dataset == dataset and key not in seen:
                seen.add(key)
                cells.append((key[1], spec))
    return cells


def _add(totals: dict[str, Estimate], est: Estimate) -> None:
    if est.stage not in totals:
        totals[est.stage] = Estimate(est.dataset, est.stage, 0, 0, 0, 0)
    t = totals[est.stage]
    t.calls, t.max_calls = t.calls + est.calls, t.max_calls + est.max_calls
    t.prompt_tokens += est.prompt_tokens
    t.completion_tokens += est.completion_tokens
    t.evaluated_tokens += est.evaluated_tokens


def _cell_estimates(kind: str, spec: ExperimentSpec) -> list[Estimate]:
    ds = load_dataset(spec.dataset, data_dir=spec.data_dir)
    split = few_shot_split(ds, spec.shots_used, spec.seed)
    ctx = _Context(spec, split)
    method = METHODS[spec.method]
    if kind == "teacher":
        texts = [ex.text for ex in teacher_test_set(split.test, spec.teacher_test_limit)]
        return [ctx.describe(), ctx.relabel("teacher", texts)]
    # unlabelled train texts (outside the seeds) stand in for the generated texts the relabel calls will see
    seeds = {ex.text for ex in split.seeds}
    proxies = random.Random(spec.seed).sample([ex.text for ex in ds.train if ex.text not in seeds],
                                              min(SAMPLE, len(ds.train) - len(seeds)))
    factor = GENERATIONS[method.generation].get("per_class_factor", 1)
    quota = factor * spec.per_class * len(split.labels)
    if kind == "relabel":  # a2c: a2's texts again, with the compiled relabeler (its compile is not counted)
        return [ctx.relabel(f"relabel ({spec.method})", proxies, calls=quota)]
    return [ctx.describe(), ctx.generate(method.generation), ctx.relabel("relabel", proxies, calls=quota)]


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
        """DESCRIBE_CHUNK classes a call, then the fit check: CHECK_CHUNK seeds of the described classes a call."""
        from promptmix_dspy.method.modules import DESCRIBE_CHUNK
        from promptmix_dspy.pipeline.describe import CHECK_CHUNK

        todo = [label for label in self.split.labels if label not in self.split.dataset.descriptions]
        seeds = self.split.seeds_by_label()
        lines = [f"{label}: {text}" for label, texts in seeds.items() for text in texts]
        chunks = [todo[i:i + DESCRIBE_CHUNK] for i in range(0, len(todo), DESCRIBE_CHUNK)]
        prompts = [self.prompt(DescribeClasses, {"all_classes": self.split.labels, "class_examples": lines,
                                                 "classes": chunk}) for chunk in chunks]
        checks = -(-sum(len(seeds[label]) for label in todo) // CHECK_CHUNK)
        calls = len(chunks) + checks
        return Estimate(self.spec.dataset, "describe", calls, calls, sum(prompts) + 500 * checks,
                        60 * len(todo) + 40 * checks)

    def generate(self, generation: str) -> Estimate:
        config = self.spec.augment_config(generation)
        plan = mix_plan(self.split.labels, config.per_class, config.seed, texts_per_call=config.texts_per_call,
                        group_size=config.group_size, fixed_share=config.fixed_share)
        return self.generate_plan(f"generate ({generation})", plan, config)

    def generate_plan(self, stage: str, plan: list, config: Any) -> Estimate:
        signature = with_task(GenerateBorderlineExamples, self.split.dataset.task)
        messages = [self.adapter.format(signature, demos=[], inputs=self._generation_inputs(call)) for call in plan]
        prompts = [self.tokens(m) for m in messages]
        completion = int(config.texts_per_call * (self.text_tokens + 4) + 10)
        asks = 1 + config.reask  # a re-ask for the texts clean-up dropped is one more request of the same call
        return Estimate(self.spec.dataset, stage, len(plan), len(plan) * config.max_rounds * asks,
                        sum(prompts), completion * len(plan), self.evaluated(messages, prompts))

    def evaluated(self, messages: list[list[dict]], prompts: list[int], scale: float = 1.0) -> int:
        """The prompt tokens the server evaluates for these prompts sent in order over SLOTS slots: each pays
        for what follows its longest common prefix with a prompt a slot holds (character share of its tokens)."""
        held: list[str] = []
        total = 0.0
        for message, n in zip(messages, prompts):
            text = "\x1e".join(m["content"] for m in message)
            shared = max((_common_prefix(text, h) for h in held), default=0)
            total += n * (1 - shared / max(1, len(text)))
            held = ([text] + [h for h in held if h != text])[:SLOTS]
        return int(total * scale)

    def _generation_inputs(self, call: Any) -> dict:
        return {"class_cards": [self.cards[c] for c in call.group], "majority_class": call.majority,
                "minority_class": call.minority or "none", "num_texts": call.num_texts,
                "majority_share": share_phrase(call.majority, call.minority, call.majority_share),
                "already_written": []}

    def relabel(self, stage: str, texts: list[str], calls: int | None = None) -> Estimate:
        """Prompts over a sample of texts, formatted as the Relabeler sends them (one text per call: its layout,
        its candidates, the seeds as solved examples) in the run's order (by candidate set), scaled to ``calls``."""
        from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder, plan_batches
        from promptmix_dspy.method.modules import Relabeler

        cards = list(self.cards.values())
        encoder = SentenceEncoder() if self.spec.top_k < len(cards) else None
        selector = CandidateSelector({c.name: c.examples for c in cards}, encoder, self.spec.top_k)
        relabeler = Relabeler(cards, selector, task=self.split.dataset.task, layout=self.spec.layout)
        sample = [b[0] for b in plan_batches(list(dict.fromkeys(texts))[:SAMPLE] or [""], selector, 1)]
        messages = []
        for text in sample:
            signature, demos, inputs = relabeler.request(text)
            messages.append(self.adapter.format(signature, demos=demos, inputs=inputs))
        sizes = [self.tokens(m) for m in messages]
        n_calls = len(texts) if calls is None else calls
        scale = n_calls / len(sample)
        completion = 3 * n_calls  # the answer as short as the label, and its end token
        return Estimate(self.spec.dataset, stage, n_calls, n_calls, int(statistics.fmean(sizes) * n_calls),
                        completion, self.evaluated(messages, sizes, scale))


def _common_prefix(a: str, b: str) -> int:
    import os

    return len(os.path.commonprefix([a, b]))


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
    lines = [f"{'dataset':<20} {'stage':<22} {'calls':>14} {'prompt tokens':>14} {'evaluated':>10} "
             f"{'completion':>10} {'hours':>6}"]
    for e in estimates:
        calls = f"{e.calls}" if e.calls == e.max_calls else f"{e.calls} (<= {e.max_calls})"
        lines.append(f"{e.dataset:<20} {e.stage:<22} {calls:>14} {e.prompt_tokens:>14,} {e.evaluated_tokens:>10,} "
                     f"{e.completion_tokens:>10,} {e.seconds() / 3600:>6.2f}")
    calls = sum(e.calls for e in estimates)
    prompt, completion = sum(e.prompt_tokens for e in estimates), sum(e.completion_tokens for e in estimates)
    evaluated, hours = sum(e.evaluated_tokens for e in estimates), sum(e.seconds() for e in estimates) / 3600
    lines.append(f"{'total':<43} {calls:>14} {prompt:>14,} {evaluated:>10,} {completion:>10,} {hours:>6.2f}")
    lines.append(f"hours: on the embedded server, 2 cores, {PROMPT_TOKENS_PER_S:.0f} evaluated prompt and "
                 f"{DECODE_TOKENS_PER_S:.0f} completion tokens/s (benchmarks/server_profile.py); the first round only")
    price = estimate_price(model, prompt, completion)
    lines.append(f"estimated price for {model}: " + (f"${price:.4f} (litellm's price table; more if generation "
                 f"needs extra rounds); through the batch API (--batch-api): ${price * BATCH_DISCOUNT:.4f}"
                 if price is not None else "unknown: the model is not in litellm's price table (a local model costs "
                 "only time)"))
    return "\n".join(lines)
