"""The steps of an augmentation run, each journaled in the run folder: describe, generate, relabel."""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

from promptmix_dspy.data.fewshot import FewShotSplit
from promptmix_dspy.llm.runner import Budget, UnitResult, run_parallel, run_unit
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.cleanup import normalize
from promptmix_dspy.method.mixing import MixCall, mix_plan
from promptmix_dspy.method.modules import ClassDescriber, PromptMix
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.store.files import Journal, atomic_write_json

__all__ = ["build_program", "describe_classes", "generate", "relabel", "text_key"]

logger = logging.getLogger(__name__)
Drops = list[tuple[str, str]]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------------------
# descriptions


def describe_classes(split: FewShotSplit, config: AugmentConfig, handle: LMHandle, out: Path,
                     budget: Budget) -> list[ClassCard]:
    """Class cards from the dataset's descriptions; the LM writes those that are missing (or all, if asked)."""
    given = split.dataset.descriptions if config.describe == "missing" else {}
    seeds = split.seeds_by_label()
    todo = [label for label in split.labels if label not in given]
    journal = Journal(out / "descriptions.jsonl", key="label")
    describer = ClassDescriber()

    def work(label: str) -> UnitResult:
        others = [x for x in split.labels if x != label]
        return run_unit(lambda attempt: _describe(describer, handle, label, seeds[label], others, attempt),
                        config.attempts, handle.price)

    def done(label: str, result: UnitResult) -> None:
        journal.append({"label": label, "description": result.value, "error": result.error,
                        "usage": result.usage()})

    run_parallel([x for x in todo if _unfinished(journal, x)], work, done, budget,
                 handle.in_flight(config.num_threads), "describe")
    descriptions = {label: given.get(label) or _journaled_description(journal, label) for label in split.labels}
    atomic_write_json(out / "descriptions.json", descriptions)
    return [ClassCard(name=label, description=descriptions[label], examples=seeds[label]) for label in split.labels]


def _describe(describer: ClassDescriber, handle: LMHandle, label: str, examples: list[str], others: list[str],
              attempt: int) -> str:
    with handle.context():
        text = describer(class_name=label, examples=examples, other_classes=others, attempt=attempt).description
    if not text:
        raise ValueError("empty description")
    return text


def _journaled_description(journal: Journal, label: str) -> str:
    row = journal.get(label)
    if row and row.get("description"):
        return row["description"]
    logger.warning("no description for class %r (the LM call failed): using its name", label)
    return label.replace("_", " ")


def _unfinished(journal: Journal, key: str) -> bool:
    row = journal.get(key)
    return row is None or bool(row.get("error"))


# ----------------------------------------------------------------------------------------------------------
# program


def build_program(cards: list[ClassCard], config: AugmentConfig, programs: str | Path | None) -> PromptMix:
    """PromptMix over the class cards, with top-k candidates by sentence embedding; compiled state if given."""
    from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder

    seeds = {card.name: card.examples for card in cards}
    encoder = SentenceEncoder(config.encoder) if config.top_k < len(cards) else None
    selector = CandidateSelector(seeds, encoder, config.top_k)
    program = PromptMix(cards, selector, config.generation_temperature, config.relabel_temperature)
    if programs:
        from promptmix_dspy.method.programs import load_compiled

        load_compiled(program, programs, [card.name for card in cards])
    return program


# ----------------------------------------------------------------------------------------------------------
# generation


def generate(program: PromptMix, split: FewShotSplit, config: AugmentConfig, handle: LMHandle, out: Path,
             budget: Budget) -> tuple[list[dict], Drops]:
    """Run mix calls in rounds until every class has per_class clean, distinct texts (or rounds run out)."""
    journal = Journal(out / "generated.jsonl", key="call_id")
    done_calls: list[MixCall] = []
    for round_no in range(config.max_rounds):
        plan = _plan_round(round_no, split.labels, done_calls, journal, config)
        if not plan:
            break
        todo = [c for c in plan if _unfinished(journal, c.call_id)]
        run_parallel(todo, lambda c: _generate_call(program, handle, c, config), _journal_call(journal, round_no),
                     budget, handle.in_flight(config.num_threads), f"generate (round {round_no + 1})")
        done_calls += plan
    selected, drops = _select(split, done_calls, journal, config.per_class)
    atomic_write_json(out / "plan.json", [c.to_dict() for c in done_calls])
    return selected, drops


def _plan_round(round_no: int, labels: list[str], done: list[MixCall], journal: Journal,
                config: AugmentConfig) -> list[MixCall]:
    common = dict(texts_per_call=config.texts_per_call, group_size=config.group_size,
                  fixed_share=config.fixed_share)
    if round_no == 0:
        return mix_plan(labels, config.per_class, config.seed, **common)
    counts = Counter(row["generated_for"] for row in _selected_rows(labels, done, journal, config.per_class)[0])
    short = {label: config.per_class - counts[label] for label in labels if counts[label] < config.per_class}
    if not short:
        return []
    calls = {label: math.ceil(n / config.texts_per_call) for label, n in short.items()}
    starts = {label: 1 + max(c.sample_index for c in done if c.majority == label) for label in short}
    return mix_plan(labels, config.per_class, config.seed, start_index=starts, calls_per_class=calls, **common)


def _generate_call(program: PromptMix, handle: LMHandle, call: MixCall, config: AugmentConfig) -> UnitResult:
    cards = [program.cards[c] for c in call.group]

    def attempt_fn(attempt: int) -> Any:
        with handle.context():
            pred = program.generator(class_cards=cards, majority_class=call.majority, minority_class=call.minority,
                                     majority_share=call.majority_share, num_texts=call.num_texts,
                                     sample_index=call.sample_index, attempt=attempt)
        if not pred.raw_texts:
            raise ValueError("empty answer: no texts")  # retried as a fresh sample, then counted and skipped
        return pred

    return run_unit(attempt_fn, config.attempts, handle.price)


def _journal_call(journal: Journal, round_no: int):
    def done(call: MixCall, result: UnitResult) -> None:
        pred = result.value
        journal.append({"call_id": call.call_id, "round": round_no, "call": call.to_dict(),
                        "texts": list(pred.texts) if pred else [], "raw_texts": list(pred.raw_texts) if pred else [],
                        "dropped": [list(d) for d in pred.dropped] if pred else [], "error": result.error,
                        "usage": result.usage()})
    return done


def _select(split: FewShotSplit, calls: list[MixCall], journal: Journal, per_class: int) -> tuple[list[dict], Drops]:
    rows, drops = _selected_rows(split.labels, calls, journal, per_class)
    for call in calls:
        row = journal.get(call.call_id) or {}
        drops += [(raw, reason) for raw, reason in row.get("dropped", [])]
        if row.get("error"):
            drops.append((call.call_id, "llm_call_failed"))
    return rows, drops


def _selected_rows(labels: list[str], calls: list[MixCall], journal: Journal,
                   per_class: int) -> tuple[list[dict], Drops]:
    """Up to per_class distinct texts per class, in round, then label, then call order: deterministic."""
    seen: set[str] = set()
    counts: Counter = Counter()
    rows, drops = [], []
    order = {label: i for i, label in enumerate(labels)}
    for call in _ordered(calls, journal, order):
        for text in (journal.get(call.call_id) or {}).get("texts", []):
            key = normalize(text)
            if key in seen:
                drops.append((text, "duplicate"))
            elif counts[call.majority] >= per_class:
                drops.append((text, "over_quota"))
            else:
                seen.add(key)
                counts[call.majority] += 1
                rows.append({"text": text, "generated_for": call.majority, "majority": call.majority,
                             "minority": call.minority, "majority_share": call.majority_share,
                             "call_id": call.call_id})
    return rows, drops


def _ordered(calls: list[MixCall], journal: Journal, order: dict[str, int]) -> list[MixCall]:
    return sorted(calls, key=lambda c: ((journal.get(c.call_id) or {}).get("round", 0), order[c.majority],
                                        c.sample_index))


# ----------------------------------------------------------------------------------------------------------
# relabeling


def relabel(program: PromptMix, selected: list[dict], config: AugmentConfig, handle: LMHandle, out: Path,
            budget: Budget) -> tuple[list[dict], Drops]:
    """Relabel every selected text (or keep its generated label when relabeling is off) -> final rows."""
    if not config.relabel:
        return [_final(row, row["generated_for"], handle) for row in selected], []
    journal = Journal(out / "relabeled.jsonl", key="key")
    todo = [row for row in selected if _unfinished(journal, text_key(row["text"]))]
    program.relabeler.selector.warm([row["text"] for row in todo])

    def work(row: dict) -> UnitResult:
        def attempt_fn(attempt: int) -> Any:
            with handle.context():
                return program.relabeler(text=row["text"], attempt=attempt)
        return run_unit(attempt_fn, config.attempts, handle.price)

    def done(row: dict, result: UnitResult) -> None:
        pred = result.value
        journal.append({"key": text_key(row["text"]), "text": row["text"], "label": pred.label if pred else None,
                        "candidates": list(pred.candidates) if pred else [], "error": result.error,
                        "usage": result.usage()})

    run_parallel(todo, work, done, budget, handle.in_flight(config.num_threads), "relabel")
    return _final_rows(selected, journal, handle)


def _final_rows(selected: list[dict], journal: Journal, handle: LMHandle) -> tuple[list[dict], Drops]:
    rows, drops = [], []
    for row in selected:
        answer = journal.get(text_key(row["text"])) or {}
        if answer.get("label") is None:
            drops.append((row["text"], "relabel_failed"))
        else:
            rows.append(_final(row, answer["label"], handle))
    return rows, drops


def _final(row: dict, label: str, handle: LMHandle) -> dict:
    return {**row, "label": label, "relabeled": label != row["generated_for"], "lm": handle.model}
