"""Metrics against hand computations, the report files, and evaluate_model on a tiny trained student."""

from __future__ import annotations

import json
import os
import random

import pytest

from promptmix_dspy.data.types import DataError, Example
from promptmix_dspy.student.evaluate import classification_metrics, evaluate_model, write_report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "c", "c"]


def test_metrics_match_a_hand_computation():
    m = classification_metrics(GOLD, PRED, ["a", "b", "c"])
    # a: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 0.8;  b: tp 1, fp 1, fn 1 -> 0.5, 0.5, 0.5;
    # c: tp 1, fp 1, fn 0 -> P 0.5, R 1, F1 2/3;  accuracy 4/6;  macro-F1 (0.8 + 0.5 + 2/3) / 3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"]["precision"] == pytest.approx(1.0)
    assert m["per_class"]["a"]["recall"] == pytest.approx(2 / 3)
    assert [m["per_class"][k]["f1"] for k in "abc"] == pytest.approx([0.8, 0.5, 2 / 3])
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert [m["per_class"][k]["support"] for k in "abc"] == [3, 2, 1]
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]  # rows gold, columns predicted


def test_never_predicted_class_scores_zero_and_absent_class_is_left_out_of_macro():
    m = classification_metrics(["a", "b", "b"], ["a", "a", "a"], ["a", "b", "z"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2, "predicted": 0}
    # a: tp 1, fp 2, fn 0 -> F1 0.5; z occurs nowhere, so macro-F1 = (0.5 + 0) / 2
    assert m["macro_f1"] == pytest.approx(0.25)


def test_metrics_agree_with_scikit_learn_on_a_random_case():
    from sklearn import metrics
    rng = random.Random(0)
    labels = ["w", "x", "y", "z"]
    gold = [rng.choice(labels) for _ in range(200)]
    pred = [g if rng.random() < 0.6 else rng.choice(labels[:3]) for g in gold]
    m = classification_metrics(gold, pred, labels)
    assert m["macro_f1"] == pytest.approx(metrics.f1_score(gold, pred, average="macro"))
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(gold, pred))
    assert m["confusion"] == metrics.confusion_matrix(gold, pred, labels=labels).tolist()


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="3 gold labels but 2 predictions"):
        classification_metrics(["a", "a", "b"], ["a", "b"], ["a", "b"])
    with pytest.raises(DataError, match=r"gold label 'q' \(example 2\)"):
        classification_metrics(["a", "q"], ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="no examples"):
        classification_metrics([], [], ["a", "b"])


def test_write_report_writes_json_markdown_and_png(tmp_path):
    report = {"dataset": "toy", **classification_metrics(GOLD, PRED, ["a", "b", "c"])}
    paths = write_report(report, tmp_path / "eval")
    assert json.loads(paths["json"].read_text())["accuracy"] == pytest.approx(4 / 6)
    md = paths["md"].read_text()
    assert "Accuracy 0.6667, macro-F1 0.6556" in md and "| a | 1.0000 | 0.6667 | 0.8000 | 3 |" in md
    assert "| b | 0 | 1 | 1 |" in md and "- dataset: toy" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_model_scores_a_trained_student(tmp_path):
    from student_fixtures import LABELS, make_examples, make_tiny_bert

    from promptmix_dspy.student.model import predict
    from promptmix_dspy.student.train import TrainConfig, train_student

    base = make_tiny_bert(tmp_path / "bert")
    model = train_student(make_examples(4, 0), LABELS, TrainConfig(student=str(base), epochs=1, min_steps=0), tmp_path / "s")
    test = make_examples(5, seed=9)
    report = evaluate_model(model, test, tmp_path / "eval", meta={"split": "test"})
    pred = predict(model, [ex.text for ex in test])
    assert report["accuracy"] == pytest.approx(sum(p == ex.label for p, ex in zip(pred, test)) / len(test))
    assert report["split"] == "test" and report["n"] == 15
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == pred
    with pytest.raises(DataError, match="gold label 'ABBR'"):
        evaluate_model(model, [Example("what does it stand for", "ABBR")])
