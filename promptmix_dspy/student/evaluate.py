"""Metrics and reports for a student: accuracy, macro-F1, per-class F1, the confusion matrix.

``evaluate_model`` runs a saved student over labelled examples and writes report.json, report.md,
confusion.png and predictions.jsonl. The metrics come from scikit-learn: F1 of a class with no true or predicted
example is 0, and macro-F1 averages the classes that occur in the gold or the predicted labels.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from promptmix_dspy.data.types import DataError, Example

__all__ = ["classification_metrics", "evaluate_model", "plot_confusion", "write_report"]

logger = logging.getLogger(__name__)

MAX_TABLE_CLASSES = 20  # above this the markdown report leaves the confusion matrix to the PNG


def classification_metrics(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = gold), from
    scikit-learn. Macro-F1 averages the classes that occur in the gold or the predicted labels (a class of the
    label set that neither has would count as F1 0 and pull the mean down for nothing)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    _check_pairs(gold, pred, labels)
    labels = list(labels)
    confusion = confusion_matrix(gold, pred, labels=labels).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    predicted = [sum(row[i] for row in confusion) for i in range(len(labels))]
    per_class = {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                         "support": int(support[i]), "predicted": predicted[i]} for i, label in enumerate(labels)}
    present = [label for label in labels if per_class[label]["support"] or per_class[label]["predicted"]]
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)),
        "per_class": per_class,
        "labels": labels,
        "confusion": confusion,
    }


def _check_pairs(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ValueError("nothing to evaluate: no examples")
    known = set(labels)
    for name, seq in (("gold", gold), ("predicted", pred)):
        for i, label in enumerate(seq, start=1):
            if label not in known:
                raise DataError(f"{name} label {label!r} (example {i}) is not one of {list(labels)}")


def evaluate_model(model: Any, examples: Sequence[Example], out_dir: str | Path | None = None,
                   batch_size: int = 64, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Predict with a student (a folder or a loaded ``Student``), score it, and write the report to out_dir."""
    from promptmix_dspy.student.card import record_evaluation
    from promptmix_dspy.student.model import Student, load_student, predict

    student = model if isinstance(model, Student) else load_student(model)
    if not examples:
        raise DataError("nothing to evaluate: no examples")
    started = time.perf_counter()
    pred = predict(student, [ex.text for ex in examples], batch_size=batch_size)
    seconds = time.perf_counter() - started
    report = {**(meta or {}), **classification_metrics([ex.label for ex in examples], pred, student.labels)}
    report["texts_per_second"] = round(len(examples) / seconds, 1)
    if not isinstance(model, Student):
        record_evaluation(model, report)  # the folder's model card now shows these figures
    if out_dir is not None:
        write_report(report, out_dir)
        _write_predictions(examples, pred, Path(out_dir) / "predictions.jsonl")
    logger.info("accuracy %.4f, macro-F1 %.4f on %d examples", report["accuracy"], report["macro_f1"], len(pred))
    return report


def _write_predictions(examples: Sequence[Example], pred: Sequence[str], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for ex, p in zip(examples, pred):
            fh.write(json.dumps({"text": ex.text, "label": ex.label, "prediction": p}, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------------------
# Reports


def write_report(report: dict[str, Any], out_dir: str | Path, title: str = "Student evaluation") -> dict[str, Path]:
    """Write report.json, report.md and confusion.png for a dict made by ``classification_metrics``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "confusion.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(_markdown(report, title), encoding="utf-8")
    plot_confusion(report["confusion"], report["labels"], paths["png"])
    return paths


def _markdown(report: dict[str, Any], title: str) -> str:
    context = [f"- {k}: {v}" for k, v in report.items()
               if isinstance(v, (str, int, float)) and k not in ("n", "accuracy", "macro_f1")]
    lines = [f"# {title}", "", *context, f"- examples: {report['n']}", "",
             f"**Accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}**", "",
             "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, s in report["per_class"].items():
        lines.append(f"| {label} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s['support']} |")
    return "\n".join(lines + [""] + _confusion_table(report["confusion"], report["labels"])) + "\n"


def _confusion_table(confusion: list[list[int]], labels: list[str]) -> list[str]:
    if len(labels) > MAX_TABLE_CLASSES:
        return ["Confusion matrix: see confusion.png (rows = gold, columns = predicted)."]
    lines = ["Confusion matrix (rows = gold, columns = predicted):", "",
             "| gold \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    lines += [f"| {label} | " + " | ".join(str(c) for c in row) + " |" for label, row in zip(labels, confusion)]
    return lines


def plot_confusion(confusion: list[list[int]], labels: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix as a PNG; counts are written in the cells for up to 20 classes.

    Uses ``matplotlib.figure.Figure`` directly (Agg canvas), so no pyplot state or backend is touched.
    """
    from matplotlib.figure import Figure

    n = len(labels)
    rates = [[c / max(sum(row), 1) for c in row] for row in confusion]
    size = max(4.0, 0.22 * n + 2.5)
    fig = Figure(figsize=(size, size * 0.9), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the gold class")
    font = 8 if n <= 20 else 4
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if n <= MAX_TABLE_CLASSES:
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                        color="white" if rates[i][j] > 0.5 else "black")
    fig.savefig(path, dpi=120)
    return Path(path)
