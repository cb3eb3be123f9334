"""The relabel step: every selected text labelled by the LLM relabeler, in batches, journaled.

Texts are grouped into batches of ``relabel_batch`` that share their candidate classes
(``method.candidates.plan_batches``), so one call labels several texts over one set of class cards and
consecutive calls share their prompt prefix. Each call is one journal line (relabeled.jsonl) with the texts and
the classes they got. A text the batched answer left without a valid class is relabeled alone afterwards, and
only a text whose single call also fails is dropped. ``label_texts`` is shared with the teacher.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from promptmix_dspy.llm.adapters import label_mappings
from promptmix_dspy.llm.runner import Budget, UnitResult, run_parallel, run_unit
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.candidates import plan_batches
from promptmix_dspy.method.modules import PromptMix, Relabeler
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.pipeline.generate import Drops
from promptmix_dspy.store.files import Journal

__all__ = ["LabelJournal", "label_texts", "relabel", "text_key"]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class LabelJournal(Journal):
    """The relabel journal: one line per call (its texts and their classes), looked up by text."""

    def __init__(self, path: Path):
        super().__init__(path, key="key")
        self._labels: dict[str, str] = {}
        for row in self.rows.values():
            self._index(row)

    def append(self, row: dict) -> None:
        super().append(row)
        self._index(row)

    def label(self, text: str) -> str | None:
        """The class a call gave ``text`` (None when none did yet)."""
        return self._labels.get(text_key(text))

    def _index(self, row: dict) -> None:
        for text, label in zip(row.get("texts", []), row.get("classes", [])):
            if label is not None:
                self._labels[text_key(text)] = label


def relabel(program: PromptMix, selected: list[dict], config: AugmentConfig, handle: LMHandle, out: Path,
            budget: Budget) -> tuple[list[dict], Drops]:
    """Relabel every selected text (or keep its generated label when relabeling is off) -> final rows."""
    if not config.relabel:
        return [_final(row, row["generated_for"], handle) for row in selected], []
    labels = label_texts(program.relabeler, [row["text"] for row in selected], out / "relabeled.jsonl", config,
                         handle, budget, "relabel")
    rows, drops = [], []
    for row in selected:
        if labels.get(row["text"]) is None:
            drops.append((row["text"], "relabel_failed"))
        else:
            rows.append(_final(row, labels[row["text"]], handle))
    return rows, drops


def label_texts(relabeler: Relabeler, texts: Sequence[str], journal_path: Path, config: AugmentConfig,
                handle: LMHandle, budget: Budget, desc: str) -> dict[str, str | None]:
    """The class of every text (None where every try failed): journaled batches first, then the texts the
    batches missed, one call each."""
    journal = LabelJournal(journal_path)
    todo = [t for t in dict.fromkeys(texts) if journal.label(t) is None]
    relabeler.selector.warm(todo)
    batches = plan_batches(todo, relabeler.selector, config.relabel_batch)
    _run_batches(relabeler, batches, journal, config, handle, budget, desc)
    missed = [[t] for t in todo if journal.label(t) is None]
    if config.relabel_batch > 1 and missed:
        _run_batches(relabeler, missed, journal, config, handle, budget, f"{desc} (one at a time)")
    return {t: journal.label(t) for t in texts}


def _run_batches(relabeler: Relabeler, batches: list[list[str]], journal: LabelJournal, config: AugmentConfig,
                 handle: LMHandle, budget: Budget, desc: str) -> None:
    def work(batch: list[str]) -> UnitResult:
        def attempt_fn(attempt: int) -> Any:
            with handle.context(), label_mappings() as mapped:
                pred = relabeler(texts=batch, attempt=attempt)
            if all(label is None for label in pred.classes):
                raise ValueError("the answer gave no text a class")
            return {"classes": list(pred.classes), "candidates": list(pred.candidates), "mapped": mapped}
        return run_unit(attempt_fn, config.attempts, handle.price)

    def done(batch: list[str], result: UnitResult) -> None:
        value = result.value or {"classes": [None] * len(batch), "candidates": [], "mapped": []}
        journal.append({"key": _batch_key(batch), "texts": batch, **value, "error": result.error,
                        "usage": result.usage()})

    run_parallel(batches, work, done, budget, handle.in_flight(config.num_threads), desc)


def _batch_key(batch: list[str]) -> str:
    return text_key("\x1f".join(batch)) if len(batch) > 1 else text_key(batch[0])


def _final(row: dict, label: str, handle: LMHandle) -> dict:
    return {**row, "label": label, "relabeled": label != row["generated_for"], "lm": handle.model}
