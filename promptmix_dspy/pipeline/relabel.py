"""The relabel step: every selected text labelled by the LLM relabeler, journaled, then calibrated.

One text per call by default: the answer is as short as the label and carries each candidate's probability
from its logprobs (method/modules.py ``Relabeler``). Texts are ordered by their candidate classes
(``method.candidates.plan_batches``), so consecutive calls share their prompt prefix and the server reuses its
cache. With ``relabel_batch`` > 1 one call labels several texts over one set of class cards (no probabilities);
a text the batched answer left without a valid class is relabeled alone afterwards, and only a text whose single
call also fails is dropped. Each call is one journal line (relabeled.jsonl). Then the probabilities are calibrated
over the run's texts (``config.calibrate``, method/calibration.py): each final row carries the LLM's answer
(``label_raw``), its raw and calibrated probabilities, the calibrated argmax as ``label`` and its probability as
``confidence``. Where the provider returned no logprobs, the answer is the label and the row says so.
``answer_texts`` is shared with the teacher.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from promptmix_dspy.llm.adapters import label_mappings
from promptmix_dspy.llm.batch import wait_for_batch
from promptmix_dspy.llm.runner import Budget, UnitResult, run_parallel, run_unit
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.calibration import CONTENT_FREE_TEXTS, apply_prior, batch_prior, class_shares, mean_probs
from promptmix_dspy.method.candidates import plan_batches
from promptmix_dspy.method.modules import PromptMix, Relabeler
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.pipeline.generate import Drops
from promptmix_dspy.store.files import Journal

__all__ = ["Answer", "LabelJournal", "answer_texts", "calibrate", "label_texts", "relabel", "text_key"]

logger = logging.getLogger(__name__)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class Answer:
    """What the LLM said of one text: its class, and each candidate's probability (None: not available)."""

    label: str
    probs: dict[str, float] | None = None


class LabelJournal(Journal):
    """The relabel journal: one line per call (its texts, their classes and probabilities), looked up by text."""

    def __init__(self, path: Path):
        super().__init__(path, key="key")
        self._answers: dict[str, Answer] = {}
        for row in self.rows.values():
            self._index(row)

    def append(self, row: dict) -> None:
        super().append(row)
        self._index(row)

    def answer(self, text: str) -> Answer | None:
        """What a call gave ``text`` (None when none did yet)."""
        return self._answers.get(text_key(text))

    def label(self, text: str) -> str | None:
        found = self.answer(text)
        return found.label if found else None

    def _index(self, row: dict) -> None:
        probs = row.get("probs") or [None] * len(row.get("texts", []))
        for text, label, p in zip(row.get("texts", []), row.get("classes", []), probs):
            if label is not None:
                self._answers[text_key(text)] = Answer(label, p)


def relabel(program: PromptMix, selected: list[dict], config: AugmentConfig, handle: LMHandle, out: Path,
            budget: Budget) -> tuple[list[dict], Drops, dict]:
    """Relabel every selected text (or keep its generated label when relabeling is off) -> final rows, the
    drops, and what the probabilities and the calibration did (for summary.json)."""
    if not config.relabel:
        return [_final(row, Answer(row["generated_for"]), None, handle) for row in selected], [], {}
    journal_path = out / "relabeled.jsonl"
    answers = answer_texts(program.relabeler, [row["text"] for row in selected], journal_path, config, handle,
                           budget, "relabel")
    wait_for_batch()  # the calibration's prior is over every text's answer
    found = {t: a for t, a in answers.items() if a is not None}
    calibrated, record = calibrate(found, config.calibrate, program.relabeler, journal_path, config, handle, budget)
    rows, drops = [], []
    for row in selected:
        answer = answers.get(row["text"])
        if answer is None:
            drops.append((row["text"], "relabel_failed"))
        else:
            rows.append(_final(row, answer, calibrated.get(row["text"]), handle))
    record["shares"] = {"raw": class_shares([r["label_raw"] for r in rows], program.relabeler.labels),
                        "calibrated": class_shares([r["label"] for r in rows], program.relabeler.labels)}
    return rows, drops, record


def answer_texts(relabeler: Relabeler, texts: Sequence[str], journal_path: Path, config: AugmentConfig,
                 handle: LMHandle, budget: Budget, desc: str) -> dict[str, Answer | None]:
    """The answer for every text (None where every try failed): journaled calls first (texts ordered by their
    candidates), then, after batched calls, the texts the batches missed, one call each."""
    journal = LabelJournal(journal_path)
    todo = [t for t in dict.fromkeys(texts) if journal.answer(t) is None]
    relabeler.selector.warm(todo)
    batches = plan_batches(todo, relabeler.selector, config.relabel_batch)
    _run_batches(relabeler, batches, journal, config, handle, budget, desc)
    missed = [[t] for t in todo if journal.answer(t) is None]
    if config.relabel_batch > 1 and missed:
        _run_batches(relabeler, missed, journal, config, handle, budget, f"{desc} (one at a time)")
    return {t: journal.answer(t) for t in texts}


def label_texts(relabeler: Relabeler, texts: Sequence[str], journal_path: Path, config: AugmentConfig,
                handle: LMHandle, budget: Budget, desc: str) -> dict[str, str | None]:
    """The class of every text (None where every try failed): ``answer_texts`` without the probabilities."""
    answers = answer_texts(relabeler, texts, journal_path, config, handle, budget, desc)
    return {t: a.label if a else None for t, a in answers.items()}


def calibrate(answers: dict[str, Answer], method: str, relabeler: Relabeler, journal_path: Path,
              config: AugmentConfig, handle: LMHandle, budget: Budget) -> tuple[dict[str, dict], dict]:
    """Calibrated probabilities of every text that has probabilities, and the record of what was done."""
    with_probs = {t: a.probs for t, a in answers.items() if a.probs}
    record: dict[str, Any] = {"calibration": method, "with_probabilities": len(with_probs), "texts": len(answers)}
    if not with_probs:
        if answers:
            logger.warning("the LLM returned no logprobs: the relabeled rows carry hard labels only (no "
                           "probabilities, no calibration)")
        record["probabilities"] = "unavailable: the provider returned no logprobs" if answers else "no texts"
        return {}, record
    record["probabilities"] = "available"
    if method == "none":
        return dict(with_probs), record
    if method == "batch":
        prior = batch_prior(list(with_probs.values()))
        record["prior"] = {k: round(v, 4) for k, v in prior.items()}
        return {t: apply_prior(p, prior) for t, p in with_probs.items()}, record
    priors = _content_free_priors(relabeler, {tuple(p) for p in with_probs.values()}, journal_path, config, handle,
                                  budget)
    record["content_free_sets"] = len(priors)
    return {t: apply_prior(p, priors.get(tuple(p)) or {}) for t, p in with_probs.items()}, record


def _content_free_priors(relabeler: Relabeler, sets: set[tuple[str, ...]], journal_path: Path,
                         config: AugmentConfig, handle: LMHandle, budget: Budget) -> dict[tuple, dict]:
    """p(class | content-free text) for every candidate set, the mean over CONTENT_FREE_TEXTS; journaled under
    keys of their own, so a resumed run makes no call twice."""
    journal = Journal(journal_path, key="key")
    units = [(s, text) for s in sorted(sets) for text in CONTENT_FREE_TEXTS]
    key = lambda unit: "content-free:" + text_key("\x1f".join(unit[0]) + "\x1e" + unit[1])  # noqa: E731
    todo = [u for u in units if (journal.get(key(u)) or {}).get("probs") is None]

    def work(unit: tuple) -> UnitResult:
        def attempt_fn(attempt: int) -> Any:
            with handle.context():
                pred = relabeler(texts=[unit[1]], candidates=list(unit[0]), attempt=attempt)
            return {"probs": pred.probs[0]}
        return run_unit(attempt_fn, config.attempts, handle.price)

    def done(unit: tuple, result: UnitResult) -> None:
        journal.append({"key": key(unit), "content_free": unit[1], "candidates": list(unit[0]),
                        "probs": (result.value or {}).get("probs"), "error": result.error, "usage": result.usage()})

    run_parallel(todo, work, done, budget, handle.in_flight(config.num_threads), "content-free calibration")
    priors = {}
    for s in sets:
        rows = [(journal.get(key((s, t))) or {}).get("probs") for t in CONTENT_FREE_TEXTS]
        rows = [r for r in rows if r]
        if rows:
            priors[s] = mean_probs(rows)
    return priors


def _run_batches(relabeler: Relabeler, batches: list[list[str]], journal: LabelJournal, config: AugmentConfig,
                 handle: LMHandle, budget: Budget, desc: str) -> None:
    def work(batch: list[str]) -> UnitResult:
        def attempt_fn(attempt: int) -> Any:
            with handle.context(), label_mappings() as mapped:
                pred = relabeler(texts=batch, attempt=attempt)
            if all(label is None for label in pred.classes):
                raise ValueError("the answer gave no text a class")
            return {"classes": list(pred.classes), "candidates": list(pred.candidates), "mapped": mapped,
                    "probs": [_rounded(p) for p in pred.probs]}
        return run_unit(attempt_fn, config.attempts, handle.price)

    def done(batch: list[str], result: UnitResult) -> None:
        value = result.value or {"classes": [None] * len(batch), "candidates": [], "mapped": [], "probs": None}
        journal.append({"key": _batch_key(batch), "texts": batch, **value, "error": result.error,
                        "usage": result.usage()})

    run_parallel(batches, work, done, budget, handle.in_flight(config.num_threads), desc)


def _rounded(probs: dict[str, float] | None) -> dict[str, float] | None:
    return {k: round(v, 6) for k, v in probs.items()} if probs else None


def _batch_key(batch: list[str]) -> str:
    return text_key("\x1f".join(batch)) if len(batch) > 1 else text_key(batch[0])


def _final(row: dict, answer: Answer, calibrated: dict[str, float] | None, handle: LMHandle) -> dict:
    """The final row: ``label`` is the calibrated argmax where there are probabilities, else the LLM's answer."""
    label = max(calibrated, key=calibrated.get) if calibrated else answer.label
    out = {**row, "label": label, "label_raw": answer.label, "relabeled": label != row["generated_for"],
           "lm": handle.model}
    if answer.probs:
        out.update(probs_raw=_rounded(answer.probs), probs=_rounded(calibrated or answer.probs),
                   confidence=round((calibrated or answer.probs)[label], 6))
    return out
