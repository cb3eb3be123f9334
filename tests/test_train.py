"""The student trainer on a tiny random BERT with a local vocab: offline, CPU, seconds."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402, F401  a core dependency: a broken install must fail here, not skip
from student_fixtures import LABELS, make_examples, make_tiny_bert  # noqa: E402

from promptmix_dspy.data.types import DataError, Example
from promptmix_dspy.student.model import LengthGroupedBatches, load_student, predict, resolve_student
from promptmix_dspy.student.train import TrainConfig, check_rows, read_rows, read_run, train_student

FAST = {"epochs": 12, "min_steps": 0, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.1}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    config = TrainConfig(student=str(base), **FAST)
    out = tmp_path_factory.mktemp("run") / "student"
    return train_student(make_examples(16, seed=0), LABELS, config, out, provenance={"seeds": 48})


# --- config ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("weight_decay", -0.1),
                                         ("warmup_ratio", 1.0), ("max_length", 1), ("precision", "fp8"),
                                         ("device", "tpu"), ("grad_clip", 0.0), ("student", " ")])
def test_config_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} .*{value!r}"):
        TrainConfig(**{field: value})


def test_config_defaults_follow_the_authors_code_and_banking77_has_its_own():
    base = TrainConfig()
    assert (base.epochs, base.batch_size, base.lr, base.weight_decay, base.warmup_ratio, base.max_length) == \
        (5, 8, 4e-5, 0.01, 0.1, 50)
    bank = TrainConfig.for_dataset("banking77", epochs=None, seed=3)
    assert (bank.lr, bank.weight_decay, bank.epochs, bank.seed) == (6e-5, 0.001, 5, 3)
    assert TrainConfig.for_dataset("banking77", lr=1e-3).lr == 1e-3
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.for_dataset("trec6", learning_rate=1.0)


# --- batching ----------------------------------------------------------------------------------------------

def test_length_grouped_batches_cover_every_row_once_and_are_seeded():
    lengths = [(i * 7) % 23 + 1 for i in range(1000)]
    sampler = LengthGroupedBatches(lengths, batch_size=8, seed=1)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == 125
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert first != second  # a new order each epoch
    sampler.set_epoch(0)
    assert list(sampler) == first  # ... that depends only on (seed, epoch)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(first)
    assert spread < 2  # grouped by length: little padding (random batches spread about 17)


# --- training ----------------------------------------------------------------------------------------------

def test_loss_goes_down_and_the_model_learns_the_training_set(trained):
    losses = json.loads((trained / "train_config.json").read_text())["stats"]["epoch_losses"]
    assert losses[0] > 1.0  # about ln 3 at the start: three balanced classes
    assert losses[-1] < 0.5 * losses[0]
    rows = make_examples(16, seed=0)
    accuracy = sum(p == ex.label for p, ex in zip(predict(trained, [ex.text for ex in rows]), rows)) / len(rows)
    assert accuracy >= 0.9


def test_saved_folder_reloads_with_plain_transformers(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(trained)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {label: i for i, label in enumerate(LABELS)}
    assert (trained / "model.safetensors").is_file()
    enc = AutoTokenizer.from_pretrained(trained)(["where is the capital city"], return_tensors="pt")
    assert model(**enc).logits.shape == (1, 3)


def test_train_config_json_records_config_versions_and_counts(trained, base):
    record = json.loads((trained / "train_config.json").read_text())
    assert record["config"]["student"] == str(base) and record["config"]["lr"] == FAST["lr"]
    assert record["labels"] == LABELS
    assert record["data"] == {"rows": 48, "per_label": {"LOC": 16, "HUM": 16, "NUM": 16}, "seeds": 48,
                              "left_out_below_min_confidence": 0}
    assert {"torch", "transformers", "accelerate", "python"} <= set(record["versions"])
    assert record["stats"]["device"] == "cpu" and record["stats"]["mixed_precision"] == "no"


def test_predictions_are_known_labels_in_input_order(trained):
    student = load_student(trained)
    texts = ["who was the president", "how many people", "where is the river", "x y z unknown words"] * 30
    predicted = predict(student, texts, batch_size=7)
    assert len(predicted) == len(texts) and set(predicted) <= set(LABELS)
    assert predicted[:4] * 30 == predicted  # order restored after length-sorted batching
    assert predict(student, []) == []


def test_same_seed_same_model_and_caller_rng_untouched(base, tmp_path):
    config = TrainConfig(student=str(base), epochs=2, min_steps=0, lr=3e-3, seed=5)
    rows = make_examples(6, seed=2)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_student(rows, LABELS, config, tmp_path / "a")
    after = torch.rand(1)
    b = train_student(rows, LABELS, config, tmp_path / "b")
    losses = [json.loads((p / "train_config.json").read_text())["stats"]["epoch_losses"] for p in (a, b)]
    assert losses[0] == losses[1]
    assert torch.equal(before, after)  # training forks the RNG: the caller's stream goes on as if untouched


# --- bad input ---------------------------------------------------------------------------------------------

def test_read_rows_names_file_line_and_unknown_label(tmp_path):
    path = tmp_path / "augmented.jsonl"
    path.write_text('{"text": "where is it", "label": "LOC"}\n\n{"text": "who", "label": "ANIMAL"}\n')
    with pytest.raises(DataError, match=r"augmented.jsonl:3: label 'ANIMAL' is not a label this student"):
        read_rows(path, LABELS)


def test_read_rows_rejects_empty_text_and_reads_the_chosen_label_field(tmp_path):
    path = tmp_path / "augmented.jsonl"
    path.write_text('{"text": "where is it", "label": "LOC", "generated_for": "HUM"}\n')
    assert read_rows(path, LABELS, label_field="generated_for") == [Example("where is it", "HUM")]
    path.write_text('{"text": "where is it", "label": "LOC"}\n{"text": "  ", "label": "LOC"}\n')
    with pytest.raises(DataError, match=r"augmented.jsonl:2: field 'text' must be a non-empty string"):
        read_rows(path, LABELS)
    with pytest.raises(DataError, match="does not exist"):
        read_rows(tmp_path / "missing.jsonl", LABELS)


def test_read_run_reads_seeds_labels_and_dataset(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(LABELS))
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "trec6"}))
    (tmp_path / "seeds.jsonl").write_text('{"text": "who is she", "label": "HUM"}\n')
    run = read_run(tmp_path)
    assert (run.seeds, run.labels, run.dataset) == ([Example("who is she", "HUM")], LABELS, "trec6")
    (tmp_path / "seeds.jsonl").unlink()
    with pytest.raises(DataError, match="seeds.jsonl is missing"):
        read_run(tmp_path)


def test_check_rows_and_train_reject_unknown_labels_and_empty_text(base, tmp_path):
    with pytest.raises(DataError, match=r"row 2: label 'ANIMAL'"):
        check_rows([Example("a", "LOC"), Example("b", "ANIMAL")], LABELS)
    with pytest.raises(DataError, match="row 1: empty text"):
        train_student([Example(" ", "LOC")], LABELS, TrainConfig(student=str(base)), tmp_path / "s")
    with pytest.raises(DataError, match="at least 2 distinct labels"):
        check_rows([Example("a", "LOC")], ["LOC"])


def test_missing_model_directories_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory .*nowhere does not exist"):
        load_student(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="student directory .*nowhere does not exist"):
        resolve_student(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_student(str(tmp_path / "empty"))
    assert resolve_student("distilbert-base-uncased") == "distilbert-base-uncased"  # a hub name passes through
    assert resolve_student("all-MiniLM-L6-v2").endswith("model")  # the packaged offline copy


# --- command line ------------------------------------------------------------------------------------------

def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_train_predict_evaluate_and_their_errors(base, tmp_path):
    from typer.testing import CliRunner

    from promptmix_dspy.cli.app import app

    runner, run = CliRunner(), tmp_path / "run"
    run.mkdir()
    (run / "labels.json").write_text(json.dumps(LABELS))
    (run / "config.json").write_text(json.dumps({"dataset": "toy"}))
    _write_jsonl(run / "seeds.jsonl", [vars(ex) for ex in make_examples(2, seed=0)])
    augmented = [{**vars(ex), "generated_for": "LOC"} for ex in make_examples(8, seed=1)]
    aug = _write_jsonl(run / "augmented.jsonl", augmented)
    common = ["--train", str(aug), "--seeds-from", str(run), "--student", str(base), "--epochs", "12", "--min-steps", "0", "--lr", "3e-3"]

    result = runner.invoke(app, ["train", *common, "--out", str(run / "student")])
    assert result.exit_code == 0, result.output
    data = json.loads((run / "student" / "train_config.json").read_text())["data"]
    assert (data["rows"], data["seeds"], data["augmented"], data["label_field"]) == (30, 6, 24, "label")
    assert data["per_label"] == {"LOC": 10, "HUM": 10, "NUM": 10}
    result = runner.invoke(app, ["train", *common, "--label-field", "generated_for", "--out", str(run / "a1")])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "a1" / "train_config.json").read_text())["data"]["per_label"] == \
        {"LOC": 26, "HUM": 2, "NUM": 2}  # the A1 ablation: every augmented row keeps the class it was made for

    texts = tmp_path / "texts.txt"
    texts.write_text("who was the president\n\nhow many people\nwhere is the river\n")
    result = runner.invoke(app, ["predict", "--model", str(run / "student"), "--input", str(texts)])
    assert result.exit_code == 0, result.output
    assert "3 texts in" in result.output and "texts/s" in result.output
    rows = [json.loads(x) for x in (tmp_path / "texts.predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["who was the president", "how many people", "where is the river"]
    assert {r["prediction"] for r in rows} <= set(LABELS)

    data_dir = tmp_path / "toy"
    data_dir.mkdir()
    _write_jsonl(data_dir / "train.jsonl", [vars(ex) for ex in make_examples(2, seed=3)])
    _write_jsonl(data_dir / "test.jsonl", [vars(ex) for ex in make_examples(4, seed=4)])
    (data_dir / "labels.json").write_text(json.dumps(LABELS))
    result = runner.invoke(app, ["evaluate", "--model", str(run / "student"), "--dataset", str(data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "student" / "eval-toy-test" / "report.json").read_text())
    assert report["n"] == 12 and f"accuracy {report['accuracy']:.4f}" in result.output
    assert (run / "student" / "eval-toy-test" / "confusion.png").is_file()

    _write_jsonl(aug, [augmented[0], {"text": "who is it", "label": "ANIMAL"}])
    result = runner.invoke(app, ["train", *common, "--out", str(run / "bad")])
    assert result.exit_code == 2 and "augmented.jsonl:2: label 'ANIMAL'" in result.output
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "nowhere"), "--input", str(texts)])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["train", "--out", str(run / "bad"), "--student", str(base)])
    assert result.exit_code == 2 and "--seeds-from" in result.output
