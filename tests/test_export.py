"""Shipping the student: the model card on every train, the ONNX export, and predicting without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from student_fixtures import LABELS, make_examples, make_tiny_bert  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from promptmix_dspy.cli.app import app  # noqa: E402
from promptmix_dspy.student.model import load_student, predict, probabilities  # noqa: E402

FAST = ["--epochs", "12", "--min-steps", "0", "--lr", "3e-3"]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny student trained through the CLI on seeds plus an augmented file that names its LLM."""
    root = tmp_path_factory.mktemp("ship")
    base = make_tiny_bert(root / "bert")
    run = root / "run"
    run.mkdir()
    (run / "labels.json").write_text(json.dumps(LABELS))
    (run / "config.json").write_text(json.dumps({"dataset": "toy"}))
    _write_jsonl(run / "seeds.jsonl", [vars(ex) for ex in make_examples(2, seed=0)])
    augmented = [{**vars(ex), "generated_for": ex.label, "lm": "hosted_vllm/some-llm", "relabeled": i % 4 == 0}
                 for i, ex in enumerate(make_examples(8, seed=1))]
    aug = _write_jsonl(run / "augmented.jsonl", augmented)
    result = CliRunner().invoke(app, ["train", "--train", str(aug), "--seeds-from", str(run), "--student", str(base),
                                      *FAST, "--out", str(root / "student")])
    assert result.exit_code == 0, result.output
    return root


def test_every_train_writes_a_hub_model_card_with_the_datas_provenance(trained):
    from huggingface_hub import ModelCard

    card = ModelCard.load(trained / "student" / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    assert card.data.base_model == str(trained / "bert") and card.data.datasets == ["toy"]
    assert card.data.eval_results is None  # not evaluated yet, and the card says so
    assert "Not evaluated yet" in card.text
    assert "30 (6 labelled seeds + 24 augmented)" in card.text
    assert "hosted_vllm/some-llm" in card.text and "6 of 24 (25%)" in card.text  # 24 rows, every 4th relabelled
    assert "`LOC`, `HUM`, `NUM`" in card.text and "Intended use and limits" in card.text


def test_evaluating_adds_the_figures_to_the_card(trained, tmp_path):
    from huggingface_hub import ModelCard

    data = tmp_path / "toy"
    data.mkdir()
    _write_jsonl(data / "train.jsonl", [vars(ex) for ex in make_examples(2, seed=3)])
    _write_jsonl(data / "test.jsonl", [vars(ex) for ex in make_examples(4, seed=4)])
    (data / "labels.json").write_text(json.dumps(LABELS))
    model = trained / "student"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--dataset", str(data)])
    assert result.exit_code == 0, result.output
    report = json.loads((model / "eval-toy-test" / "report.json").read_text())
    card = ModelCard.load(model / "README.md")
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert metrics == {"accuracy": round(report["accuracy"], 4), "f1": round(report["macro_f1"], 4)}
    assert card.data.eval_results[0].dataset_split == "test"
    assert f"| toy | test | 12 | {report['accuracy']:.4f} |" in card.text


def test_onnx_export_agrees_with_torch_and_int8_is_smaller(trained):
    texts = [ex.text for ex in make_examples(10, seed=7)]
    (trained / "check.txt").write_text("\n".join(texts) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--model", str(trained / "student"), "--out", str(trained / "onnx"),
                                 "--check", str(trained / "check.txt")])
    assert result.exit_code == 0, result.output
    record = json.loads((trained / "onnx" / "onnx_export.json").read_text())
    assert record["check"]["n"] == 30 and record["check"]["argmax_agreement"] == 1.0
    assert record["check"]["max_prob_diff"] < 1e-4
    assert "argmax agreement with torch 100.00% on 30 texts" in result.output

    from promptmix_dspy.student.export import load_onnx_student

    onnx = load_onnx_student(trained / "onnx")
    torch_probs = probabilities(load_student(trained / "student", device="cpu"), texts, batch_size=4)
    for a, b in zip(onnx.probabilities(texts, batch_size=7), torch_probs):  # other batching, other padding
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4

    result = runner.invoke(app, ["export", "--model", str(trained / "student"), "--out", str(trained / "int8"),
                                 "--quantize", "int8", "--check", str(trained / "check.txt")])
    assert result.exit_code == 0, result.output
    record = json.loads((trained / "int8" / "onnx_export.json").read_text())
    assert record["file"] == "model.int8.onnx" and record["bytes"] < record["fp32_bytes"]
    assert record["check_fp32"]["argmax_agreement"] == 1.0 and 0.0 <= record["check"]["max_prob_diff"] < 1.0
    assert "## ONNX export" in (trained / "int8" / "README.md").read_text()


def test_predict_onnx_runs_with_torch_and_transformers_unimportable(trained):
    if not (trained / "onnx" / "model.onnx").is_file():
        CliRunner().invoke(app, ["export", "--model", str(trained / "student"), "--out", str(trained / "onnx")])
    texts = ["who was the president", "how many people", "where is the river"]
    (trained / "texts.txt").write_text("\n".join(texts) + "\n")
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from promptmix_dspy.cli.app import main\n"
            f"sys.argv = ['promptmix', 'predict', '--model', {str(trained / 'onnx')!r}, '--input', "
            f"{str(trained / 'texts.txt')!r}, '--output', {str(trained / 'onnx.jsonl')!r}]\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 texts in" in done.stdout and ", onnx)" in done.stdout
    got = [json.loads(line)["prediction"] for line in (trained / "onnx.jsonl").read_text().splitlines()]
    assert got == predict(load_student(trained / "student", device="cpu"), texts)


def test_export_and_predict_errors_name_the_flag(trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--model", str(trained / "student"), "--out", str(tmp_path / "x"),
                                 "--quantize", "int4"])
    assert result.exit_code == 2 and "--quantize" in result.output and "int4" in result.output
    result = runner.invoke(app, ["export", "--model", str(trained / "student"), "--out", str(tmp_path / "x"),
                                 "--format", "tflite"])
    assert result.exit_code == 2 and "--format must be onnx" in result.output
    (tmp_path / "t.txt").write_text("who is it\n")
    result = runner.invoke(app, ["predict", "--model", str(trained / "student"), "--input", str(tmp_path / "t.txt"),
                                 "--format", "onnx"])
    assert result.exit_code == 2 and "has no model.onnx" in result.output
    result = runner.invoke(app, ["predict", "--model", str(trained / "student"), "--input", str(tmp_path / "t.txt"),
                                 "--format", "jax"])
    assert result.exit_code == 2 and "--format must be torch, onnx or auto" in result.output
