"""The describe step: the class cards and the task description a run's prompts show, journaled.

A description or task the dataset gives is used as is. The LM writes the missing ones DESCRIBE_CHUNK classes a
call, each call seeing every class's seeds. What it wrote is checked against the seeds it was written from
(CHECK_CHUNK seeds a call, with a progress bar): with the descriptions alone (no examples, no worked example), the
relabeler must give each seed its own class; only a written class that loses one of its seeds, or takes another
class's, is described again
(warmer samples, up to ``attempts`` in all), and the version that fit best is kept. The check's outcome is in
descriptions.jsonl.
"""

from __future__ import annotations

import logging
from pathlib import Path

from promptmix_dspy.data.fewshot import FewShotSplit
from promptmix_dspy.llm.runner import Budget, UnitResult, run_parallel, run_unit
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.candidates import CandidateSelector
from promptmix_dspy.method.modules import DESCRIBE_CHUNK, ClassesDescriber, Relabeler, TaskDescriber
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.store.files import Journal, atomic_write_json

__all__ = ["TASK_KEY", "describe_classes", "describe_task"]

logger = logging.getLogger(__name__)
TASK_KEY = "(task)"  # the task description's row in descriptions.jsonl
CHECK_CHUNK = 8  # seeds placed in one call of the fit check
GENERIC_TASK = "The texts are classified into the classes below."


def describe_task(split: FewShotSplit, config: AugmentConfig, handle: LMHandle, out: Path, budget: Budget) -> str:
    """The task description: --task, else the dataset's, else one the LM writes from class names and seeds."""
    given = config.task or split.dataset.task
    if given:
        atomic_write_json(out / "task.json", {"task": given, "source": "given"})
        return given
    journal = Journal(out / "descriptions.jsonl", key="label")
    if _unfinished(journal, TASK_KEY):
        describer, seeds = TaskDescriber(), split.seeds_by_label()

        def attempt_fn(attempt: int) -> str:
            with handle.context():
                return _non_empty(describer(seeds_by_label=seeds, attempt=attempt).task)
        run_parallel([TASK_KEY], lambda _: run_unit(attempt_fn, config.attempts, handle.price),
                     _journal_to(journal, "description"), budget, 1, "describe task")
    task = (journal.get(TASK_KEY) or {}).get("description") or GENERIC_TASK
    atomic_write_json(out / "task.json", {"task": task, "source": "written by the LM"})
    return task


def describe_classes(split: FewShotSplit, config: AugmentConfig, handle: LMHandle, out: Path,
                     budget: Budget, task: str | None = None) -> list[ClassCard]:
    """Class cards from the dataset's descriptions; the LM writes those that are missing (or all, if asked),
    and rewrites a written one its class's seeds do not fit (module docstring)."""
    given = split.dataset.descriptions if config.describe == "missing" else {}
    journal = Journal(out / "descriptions.jsonl", key="label")
    todo = [label for label in split.labels if label not in given]
    for round_no in range(config.attempts if todo else 0):
        need = [x for x in todo if _needs_writing(journal, x, round_no)]
        _write(split, need, round_no, config, handle, journal, budget)
        todo = _misfits(split, given, todo, journal, config, handle, budget, task, round_no, out)
        if not todo:
            break
    descriptions = {label: given.get(label) or _best(journal, label) for label in split.labels}
    atomic_write_json(out / "descriptions.json", descriptions)
    seeds = split.seeds_by_label()
    return [ClassCard(name=label, description=descriptions[label], examples=seeds[label]) for label in split.labels]


def _needs_writing(journal: Journal, label: str, round_no: int) -> bool:
    row = journal.get(label)
    return row is None or bool(row.get("error")) or row.get("round", 0) < round_no


def _write(split: FewShotSplit, labels: list[str], round_no: int, config: AugmentConfig, handle: LMHandle,
           journal: Journal, budget: Budget) -> None:
    """The descriptions of ``labels``, DESCRIBE_CHUNK classes a call (each call sees every class's seeds)."""
    describer, seeds = ClassesDescriber(), split.seeds_by_label()
    chunks = [tuple(labels[i:i + DESCRIBE_CHUNK]) for i in range(0, len(labels), DESCRIBE_CHUNK)]

    def work(chunk: tuple[str, ...]) -> UnitResult:
        def attempt_fn(attempt: int) -> dict:
            with handle.context():
                written = describer(classes=list(chunk), seeds_by_label=seeds, attempt=attempt + round_no).descriptions
            if not any(written.values()):
                raise ValueError("empty descriptions")
            return written
        return run_unit(attempt_fn, config.attempts, handle.price)

    def done(chunk: tuple[str, ...], result: UnitResult) -> None:
        for i, label in enumerate(chunk):
            text = (result.value or {}).get(label) or None
            error = result.error or (None if text else "ValueError: no description for this class")
            journal.append({"label": label, "description": text, "error": error, "round": round_no,
                            "versions": (journal.get(label) or {}).get("versions", []),
                            "usage": result.usage() if i == 0 else {}})  # the call's usage, counted once

    run_parallel(chunks, work, done, budget, handle.in_flight(config.num_threads), "describe")


def _misfits(split: FewShotSplit, given: dict, written: list[str], journal: Journal, config: AugmentConfig,
             handle: LMHandle, budget: Budget, task: str | None, round_no: int, out: Path) -> list[str]:
    """The written classes that do not fit their seeds: shown only the descriptions, the relabeler puts one of
    their seeds elsewhere, or puts another class's seed in them (a description too broad or plainly wrong)."""
    texts = {label: (journal.get(label) or {}).get("description") for label in split.labels}
    seeds = [e for e in split.seeds if texts.get(e.label) or e.label in given]
    if not any(e.label in written for e in seeds):
        return []
    placed = _placed(split, given, texts, [e.text for e in seeds], journal, config, handle, budget, task, round_no,
                     out)
    misfits = []
    for label in written:
        mine = [e.text for e in seeds if e.label == label]
        right = sum(placed.get(t) == label for t in mine)
        stolen = sum(placed.get(e.text) == label for e in seeds if e.label != label)
        row = journal.get(label) or {}
        version = {"description": row.get("description"), "seeds_right": right, "seeds": len(mine),
                   "stolen": stolen}
        if version not in row.get("versions", []):
            journal.append({**row, "versions": [*row.get("versions", []), version], "usage": {}})
        if right < len(mine) or stolen:
            misfits.append(label)
    if misfits:
        logger.info("the descriptions written for %s do not fit the seeds: writing them again", misfits)
    return misfits


def _placed(split: FewShotSplit, given: dict, texts: dict, seed_texts: list[str], journal: Journal,
            config: AugmentConfig, handle: LMHandle, budget: Budget, task: str | None, round_no: int,
            out: Path) -> dict:
    """Which class each seed gets from the descriptions alone, among its top-k classes: CHECK_CHUNK seeds a call
    over one candidate set, journaled (describe_check<N>.jsonl) with a progress bar, so a long check is bounded,
    visible and resumable; the outcome is the row "(check N)" of descriptions.jsonl."""
    from promptmix_dspy.method.candidates import SentenceEncoder
    from promptmix_dspy.pipeline.relabel import label_texts

    key = f"(check {round_no})"
    if not _unfinished(journal, key):
        return journal.get(key)["placed"]
    cards = [ClassCard(name=label, description=given.get(label) or texts[label] or label) for label in split.labels]
    top_k = min(config.top_k, len(cards))
    encoder = SentenceEncoder(config.encoder) if top_k < len(cards) else None
    selector = CandidateSelector(split.seeds_by_label(), encoder, top_k)
    relabeler = Relabeler(cards, selector, task=task, worked_example=False)
    chunked = AugmentConfig(**{**vars(config), "relabel_batch": CHECK_CHUNK})
    placed = label_texts(relabeler, seed_texts, out / f"describe_check{round_no}.jsonl", chunked, handle, budget,
                         f"describe check {round_no + 1}")
    missing = [t for t, label in placed.items() if label is None]
    journal.append({"label": key, "placed": placed, "error": f"{len(missing)} seeds without an answer" if missing
                    else None, "usage": {}})
    return placed


def _best(journal: Journal, label: str) -> str:
    """The written version that fit the seeds best (its seeds placed in it, less others' seeds taken; the latest
    on a tie), else the class name."""
    row = journal.get(label) or {}
    versions = [v for v in row.get("versions", []) if v.get("description")]
    if versions:
        return max(reversed(versions), key=lambda v: v["seeds_right"] - v.get("stolen", 0))["description"]
    if row.get("description"):
        return row["description"]
    logger.warning("no description for class %r (the LM call failed): using its name", label)
    return label.replace("_", " ")


def _journal_to(journal: Journal, field: str):
    def done(key: str, result: UnitResult) -> None:
        journal.append({"label": key, field: result.value, "error": result.error, "usage": result.usage()})
    return done


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("empty description")
    return text


def _unfinished(journal: Journal, key: str) -> bool:
    row = journal.get(key)
    return row is None or bool(row.get("error"))
