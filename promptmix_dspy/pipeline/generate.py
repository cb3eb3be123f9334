"""The generate step: mix calls in rounds until every class has ``per_class`` clean, distinct texts.

Calls are journaled one line each (generated.jsonl) as they finish. A call whose texts clean-up dropped (seed
copies, duplicates, ...) asks the same prompt once more for the missing ones (``reask``), showing what it
already wrote: that shares the whole prompt prefix, so it costs only the new tail, where a fresh call would pay
for the class cards again. Calls run class by class, so consecutive calls share the group's cards.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from promptmix_dspy.data.fewshot import FewShotSplit
from promptmix_dspy.llm.batch import wait_for_batch
from promptmix_dspy.llm.runner import Budget, UnitResult, run_parallel, run_unit
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.cleanup import is_near_copy, normalize
from promptmix_dspy.method.mixing import MixCall, mix_plan
from promptmix_dspy.method.modules import PromptMix
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.store.files import Journal, atomic_write_json

__all__ = ["Drops", "generate", "generation_rows", "run_calls"]

Drops = list[tuple[str, str]]


def generate(program: PromptMix, split: FewShotSplit, config: AugmentConfig, handle: LMHandle, out: Path,
             budget: Budget) -> tuple[list[dict], Drops]:
    """Run mix calls in rounds until every class has per_class clean, distinct texts (or rounds run out)."""
    journal = Journal(out / "generated.jsonl", key="call_id")
    done_calls: list[MixCall] = []
    for round_no in range(config.max_rounds):
        plan = _plan_round(round_no, split.labels, done_calls, journal, config)
        if not plan:
            break
        run_calls(program, plan, config, handle, journal, budget, f"generate (round {round_no + 1})", round_no)
        wait_for_batch()  # the next round is planned from this one's answers
        done_calls += plan
    selected, drops = _select(split, done_calls, journal, config.per_class)
    atomic_write_json(out / "plan.json", [c.to_dict() for c in done_calls])
    return selected, drops


def run_calls(program: PromptMix, calls: list[MixCall], config: AugmentConfig, handle: LMHandle, journal: Journal,
              budget: Budget, desc: str, round_no: int = 0) -> None:
    """Run the calls the journal has no answer for, journaling each as it finishes."""
    todo = [c for c in calls if _unfinished(journal, c.call_id)]
    run_parallel(todo, lambda c: _generate_call(program, handle, c, config), _journal_call(journal, round_no),
                 budget, handle.in_flight(config.num_threads), desc)


def _unfinished(journal: Journal, key: str) -> bool:
    row = journal.get(key)
    return row is None or bool(row.get("error"))


def _plan_round(round_no: int, labels: list[str], done: list[MixCall], journal: Journal,
                config: AugmentConfig) -> list[MixCall]:
    common = dict(texts_per_call=config.texts_per_call, group_size=config.group_size,
                  fixed_share=config.fixed_share)
    if round_no == 0:
        return mix_plan(labels, config.per_class, config.seed, **common)
    counts = Counter(row["generated_for"] for row in generation_rows(labels, done, journal, config.per_class)[0])
    short = {label: config.per_class - counts[label] for label in labels if counts[label] < config.per_class}
    if not short:
        return []
    calls = {label: math.ceil(n / config.texts_per_call) for label, n in short.items()}
    starts = {label: 1 + max(c.sample_index for c in done if c.majority == label) for label in short}
    return mix_plan(labels, config.per_class, config.seed, start_index=starts, calls_per_class=calls, **common)


def _generate_call(program: PromptMix, handle: LMHandle, call: MixCall, config: AugmentConfig) -> UnitResult:
    """One mix call, then up to ``reask`` follow-ups for the texts clean-up dropped, as one unit of work."""
    cards = program.generation_cards(call.group)
    parts: list[Any] = []

    def ask(attempt: int, wanted: int, written: list[str], seen: set[str]) -> Any:
        with handle.context():
            pred = program.generator(class_cards=cards, majority_class=call.majority, minority_class=call.minority,
                                     majority_share=call.majority_share, num_texts=wanted,
                                     sample_index=call.sample_index if not parts else
                                     f"{call.sample_index}.reask{len(parts)}",
                                     attempt=attempt, already_written=written, seen=seen)
        if not pred.raw_texts:
            raise ValueError("empty answer: no texts")  # retried as a fresh sample, then counted and skipped
        return pred

    def attempt_fn(attempt: int) -> Any:
        seen: set[str] = set()
        written: list[str] = []
        parts.clear()
        for _ in range(1 + config.reask):
            wanted = call.num_texts - sum(len(p.texts) for p in parts)
            if wanted <= 0:
                break
            pred = ask(attempt, wanted, written, seen)
            parts.append(pred)
            written += list(pred.raw_texts)
        return _merged(parts)

    return run_unit(attempt_fn, config.attempts, handle.price)


def _merged(parts: list[Any]) -> dict:
    return {"texts": [t for p in parts for t in p.texts], "raw_texts": [t for p in parts for t in p.raw_texts],
            "dropped": [list(d) for p in parts for d in p.dropped], "asks": len(parts)}


def _journal_call(journal: Journal, round_no: int):
    def done(call: MixCall, result: UnitResult) -> None:
        value = result.value or {"texts": [], "raw_texts": [], "dropped": [], "asks": 0}
        journal.append({"call_id": call.call_id, "round": round_no, "call": call.to_dict(), **value,
                        "error": result.error, "usage": result.usage()})
    return done


def _select(split: FewShotSplit, calls: list[MixCall], journal: Journal, per_class: int) -> tuple[list[dict], Drops]:
    rows, drops = generation_rows(split.labels, calls, journal, per_class)
    for call in calls:
        row = journal.get(call.call_id) or {}
        drops += [(raw, reason) for raw, reason in row.get("dropped", [])]
        if row.get("error"):
            drops.append((call.call_id, "llm_call_failed"))
    return rows, drops


def generation_rows(labels: list[str], calls: list[MixCall], journal: Journal,
                    per_class: int) -> tuple[list[dict], Drops]:
    """Up to per_class distinct texts per class, in round, then label, then call order: deterministic. A text
    that repeats or nearly repeats one selected before (any class) is dropped as a duplicate."""
    kept: list[str] = []
    seen: set[str] = set()
    counts: Counter = Counter()
    rows, drops = [], []
    order = {label: i for i, label in enumerate(labels)}
    for call in _ordered(calls, journal, order):
        for text in (journal.get(call.call_id) or {}).get("texts", []):
            if normalize(text) in seen or is_near_copy(text, kept):
                drops.append((text, "duplicate"))
            elif counts[call.majority] >= per_class:
                drops.append((text, "over_quota"))
            else:
                seen.add(normalize(text))
                kept.append(text)
                counts[call.majority] += 1
                rows.append({"text": text, "generated_for": call.majority, "majority": call.majority,
                             "minority": call.minority, "majority_share": call.majority_share,
                             "call_id": call.call_id})
    return rows, drops


def _ordered(calls: list[MixCall], journal: Journal, order: dict[str, int]) -> list[MixCall]:
    return sorted(calls, key=lambda c: ((journal.get(c.call_id) or {}).get("round", 0), order[c.majority],
                                        c.sample_index))
