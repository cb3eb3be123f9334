"""The teacher as a classifier: the PromptMix relabeler labelling the test set ("NN+LLM" in the paper).

Same class cards, top-k candidate choice and LM as the relabeling step, so its score is the ceiling the student
distils from. Calls are threaded, retried and counted by runner.py and journaled (teacher.jsonl in the teacher
folder, shared by the llm and llm-cal cells of a seed), so a killed run resumes without repeating an answered
text. Each answer carries the candidates' probabilities where the LM gives logprobs: ``llm`` scores the answers,
``llm-cal`` the calibrated argmax, with the batch prior taken from the seed's generated texts (the mix
generation's raw probabilities: unlabelled texts of every class, never the test texts). A text whose every
attempt failed counts as wrong: it is predicted as ``NO_ANSWER``, an extra column of the confusion matrix.
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
from promptmix_dspy.method.calibration import apply_prior, batch_prior
from promptmix_dspy.pipeline.describe import describe_classes, describe_task
from promptmix_dspy.pipeline.program import build_program
from promptmix_dspy.pipeline.relabel import Answer, answer_texts
from promptmix_dspy.store.files import atomic_write_json, journal_usage, now_iso, read_json
from promptmix_dspy.store.identity import texts_sha256

__all__ = ["NO_ANSWER", "TEST_SAMPLE_SEED", "run_teacher", "teacher_sample_sha256", "teacher_test_set"]

logger = logging.getLogger(__name__)
NO_ANSWER = "(no answer)"
TEST_SAMPLE_SEED = 0  # one fixed sample for every seed, so seeds differ only in their few-shot draw


def teacher_test_set(test: list[Example], limit: int | None) -> list[Example]:
    """The whole test set, or a fixed seeded sample of ``limit`` texts (in test order) when it is larger."""
    if limit is None or limit >= len(test):
        return list(test)
    keep = set(random.Random(TEST_SAMPLE_SEED).sample(range(len(test)), limit))
    return [ex for i, ex in enumerate(test) if i in keep]


def teacher_sample_sha256(test: list[Example], limit: int | None) -> str:
    return texts_sha256(teacher_test_set(test, limit), ("text", "label"))


def run_teacher(spec: ExperimentSpec, split: FewShotSplit, folder: Path, out: Path, lm: LazyLM,
                prior_rows: list[dict] | None = None, spent_elsewhere: float = 0.0) -> dict:
    """Classify the (sampled) test set with the relabeler in ``folder`` (journaled, shared by llm and llm-cal);
    write the cell's eval/ into ``out``; return the cell's row. ``prior_rows``: the generated rows whose raw
    probabilities make llm-cal's batch prior."""
    marker = folder / "teacher.json"
    if not marker.exists():
        spent = journal_usage([folder / "descriptions.jsonl", folder / "teacher.jsonl"])["cost_usd"] or 0.0
        atomic_write_json(marker, _classify(spec, split, folder, lm, spec.budget(spent + spent_elsewhere)))
    made = read_json(marker)
    test = teacher_test_set(split.test, spec.teacher_test_limit)
    answers = {t: (Answer(a["label"], a.get("probs")) if a else None) for t, a in made["answers"].items()}
    own = "eval_raw" if spec.method == "llm-cal" else "eval"  # eval/ holds the figures of the cell's own row
    raw = _scored(spec, split, test, [_label(answers.get(ex.text)) for ex in test], out / own)
    prior = batch_prior([r["probs_raw"] for r in prior_rows or [] if r.get("probs_raw")])
    calibrated = [_calibrated(answers.get(ex.text), prior) for ex in test]
    own = "eval" if spec.method == "llm-cal" else "eval_calibrated"
    cal = _scored(spec, split, test, calibrated, out / own) if prior else None
    chosen = cal if spec.method == "llm-cal" else raw
    if spec.method == "llm-cal" and cal is None:
        raise ValueError("llm-cal needs the generation's raw probabilities for its prior, and it has none (the "
                         "LM returned no logprobs)")
    return {"accuracy": chosen["accuracy"], "macro_f1": chosen["macro_f1"], "n_test": len(test),
            "raw": {k: raw[k] for k in ("accuracy", "macro_f1")},
            "calibrated": {k: cal[k] for k in ("accuracy", "macro_f1")} if cal else None,
            "prior": {k: round(v, 4) for k, v in prior.items()} or None,
            "with_probabilities": sum(1 for a in answers.values() if a and a.probs),
            "no_answer": sum(answers.get(ex.text) is None for ex in test), "lm": made["lm"], "llm": made["llm"],
            "seconds": made["seconds"], "finished": now_iso()}


def _label(answer: Answer | None) -> str:
    return answer.label if answer else NO_ANSWER


def _calibrated(answer: Answer | None, prior: dict) -> str:
    if answer is None:
        return NO_ANSWER
    if not answer.probs or not prior:
        return answer.label
    probs = apply_prior(answer.probs, prior)
    return max(probs, key=probs.get)


def _scored(spec: ExperimentSpec, split: FewShotSplit, test: list[Example], pred: list[str], out: Path) -> dict:
    from promptmix_dspy.student.evaluate import classification_metrics, write_report

    labels = split.labels + ([NO_ANSWER] if NO_ANSWER in pred else [])
    report = {"dataset": spec.dataset, "method": spec.method, "seed": spec.seed, "split": "test",
              **classification_metrics([ex.label for ex in test], pred, labels)}
    write_report(report, out, title="Teacher (LLM relabeler) evaluation")
    _write_predictions(test, pred, out / "predictions.jsonl")
    return report


def _classify(spec: ExperimentSpec, split: FewShotSplit, folder: Path, lm: LazyLM, budget: Budget) -> dict:
    test = teacher_test_set(split.test, spec.teacher_test_limit)
    handle, config = lm(), spec.augment_config("mix")
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    task = describe_task(split, config, handle, folder, budget)
    cards = describe_classes(split, config, handle, folder, budget, task)
    program = build_program(cards, config, spec.programs_dir, task)
    answers = answer_texts(program.relabeler, [ex.text for ex in test], folder / "teacher.jsonl", config, handle,
                           budget, "teacher")
    if budget.stop_reason:
        raise RunStopped(budget.stop_reason)
    return {"answers": {t: ({"label": a.label, "probs": a.probs} if a else None) for t, a in answers.items()},
            "lm": handle.describe(), "llm": journal_usage([folder / "descriptions.jsonl", folder / "teacher.jsonl"]),
            "seconds": {"teacher": round(time.monotonic() - started, 3)}, "finished": now_iso()}


def _write_predictions(test: list[Example], pred: list[str], path: Path) -> None:
    from promptmix_dspy.store.files import atomic_write_jsonl

    atomic_write_jsonl(path, [{"text": ex.text, "label": ex.label, "prediction": p} for ex, p in zip(test, pred)])
