"""The teacher as a classifier: the PromptMix relabeler labelling the test set ("NN+LLM" in the paper).

Same class cards, top-k candidate choice and LM as the relabeling step, so its score is the ceiling the student
distils from. Calls are threaded, retried and counted by runner.py and journaled (teacher.jsonl), so a killed
run resumes without repeating an answered text. A text whose every attempt failed counts as wrong: it is
predicted as ``NO_ANSWER``, an extra column of the confusion matrix.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

from promptmix_dspy.data.fewshot import FewShotSplit
from promptmix_dspy.data.types import Example
from promptmix_dspy.experiments.spec import ExperimentSpec
from promptmix_dspy.llm.runner import Budget, RunStopped
from promptmix_dspy.llm.settings import LazyLM
from promptmix_dspy.pipeline.describe import describe_classes, describe_task
from promptmix_dspy.pipeline.program import build_program
from promptmix_dspy.pipeline.relabel import label_texts
from promptmix_dspy.store.files import atomic_write_json, journal_usage, now_iso, read_json

__all__ = ["NO_ANSWER", "TEST_SAMPLE_SEED", "run_teacher", "teacher_test_set"]

logger = logging.getLogger(__name__)
NO_ANSWER = "(no answer)"
TEST_SAMPLE_SEED = 0  # one fixed sample for every seed, so seeds differ only in their few-shot draw


def teacher_test_set(test: list[Example], limit: int | None) -> list[Example]:
    """The whole test set, or a fixed seeded sample of ``limit`` texts (in test order) when it is larger."""
    if limit is None or limit >= len(test):
        return list(test)
    keep = set(random.Random(TEST_SAMPLE_SEED).sample(range(len(test)), limit))
    return [ex for i, ex in enumerate(test) if i in keep]


def run_teacher(spec: ExperimentSpec, split: FewShotSplit, out: Path, lm: LazyLM,
                spent_elsewhere: float = 0.0) -> dict:
    """Classify the (sampled) test set with the relabeler; write eval/ and steps/teacher.json; return the row.
    The spec's max_cost covers this cell's earlier sessions and ``spent_elsewhere`` (other cells of a grid)."""
    marker = out / "steps" / "teacher.json"
    if not marker.exists():
        spent = journal_usage([out / "descriptions.jsonl", out / "teacher.jsonl"])["cost_usd"] or 0.0
        atomic_write_json(marker, _classify(spec, split, out, lm, spec.budget(spent + spent_elsewhere)))
    return read_json(marker)


def _classify(spec: ExperimentSpec, split: FewShotSplit, out: Path, lm: LazyLM, budget: Budget) -> dict:
    from promptmix_dspy.student.evaluate import classification_metrics, write_report

    test = teacher_test_set(split.test, spec.teacher_test_limit)
    handle, config = lm(), spec.augment_config("mix")
    started = time.monotonic()
    task = describe_task(split, config, handle, out, budget)
    cards = describe_classes(split, config, handle, out, budget, task)
    program = build_program(cards, config, spec.programs_dir, task)
    answers = label_texts(program.relabeler, [ex.text for ex in test], out / "teacher.jsonl", config, handle, budget,
                          "teacher")
    if budget.stop_reason:
        raise RunStopped(budget.stop_reason)
    pred = [answers.get(ex.text) or NO_ANSWER for ex in test]
    labels = split.labels + ([NO_ANSWER] if NO_ANSWER in pred else [])
    report = {"dataset": spec.dataset, "method": "llm", "seed": spec.seed, "split": "test", "lm": handle.model,
              **classification_metrics([ex.label for ex in test], pred, labels)}
    write_report(report, out / "eval", title="Teacher (LLM relabeler) evaluation")
    _write_predictions(test, pred, out / "eval" / "predictions.jsonl")
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "n_test": len(test),
            "no_answer": pred.count(NO_ANSWER), "lm": handle.describe(),
            "llm": journal_usage([out / "descriptions.jsonl", out / "teacher.jsonl"]),
            "seconds": {"teacher": round(time.monotonic() - started, 3)}, "finished": now_iso()}


def _write_predictions(test: list[Example], pred: list[str], path: Path) -> None:
    from promptmix_dspy.store.files import atomic_write_jsonl

    atomic_write_jsonl(path, [{"text": ex.text, "label": ex.label, "prediction": p} for ex, p in zip(test, pred)])
