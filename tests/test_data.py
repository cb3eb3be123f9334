"""Data layer: built-in datasets, user files, few-shot split, and every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.data.types import DataError, Dataset, Example


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def toy_rows() -> list[dict]:
    return [{"text": f"{lab} text {i}", "label": lab} for lab in ("a", "b", "c") for i in range(6)]


def test_builtin_trec6_from_data_dir(data_dir):
    ds = load_dataset("trec6", data_dir=data_dir)
    assert ds.labels == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert (len(ds.train), len(ds.test)) == (5452, 500)
    assert ds.counts("test")["ABBR"] == 9
    assert set(ds.descriptions) == set(ds.labels)


def test_builtin_without_data_dir_or_hub_says_how_to_supply(monkeypatch):
    monkeypatch.delenv("PROMPTMIX_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("subj")


def test_builtin_from_wrong_data_dir_names_the_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"subj/train.jsonl"):
        load_dataset("subj", data_dir=tmp_path)


def test_data_dir_from_environment(monkeypatch, data_dir):
    monkeypatch.setenv("PROMPTMIX_DATA_DIR", str(data_dir))
    assert load_dataset("twitter_complaints").labels == ["no complaint", "complaint"]


def test_few_shot_split_is_seeded_stratified_and_disjoint(data_dir):
    ds = load_dataset("trec6", data_dir=data_dir)
    a = few_shot_split(ds, k=2, seed=0, dev_per_class=3)
    b = few_shot_split(ds, k=2, seed=0, dev_per_class=3)
    c = few_shot_split(ds, k=2, seed=1, dev_per_class=3)
    assert a.seeds == b.seeds and a.dev == b.dev
    assert a.seeds != c.seeds
    assert [e.label for e in a.seeds] == [lab for lab in ds.labels for _ in range(2)]
    assert len(a.dev) == 18
    assert not {e.text for e in a.seeds} & {e.text for e in a.dev}
    train_texts = {e.text for e in ds.train}
    assert all(e.text in train_texts for e in a.seeds + a.dev)
    assert a.test == ds.test  # passed through, never sampled from


def test_jsonl_csv_and_hf_dataset_with_custom_columns(tmp_path, toy_rows):
    rows = [{"sentence": r["text"], "intent": r["label"]} for r in toy_rows]
    jsonl = _write(tmp_path / "d.jsonl", _jsonl(rows))
    csv_text = "sentence,intent\n" + "".join(f"\"{r['sentence']}\",{r['intent']}\n" for r in rows)
    csv = _write(tmp_path / "d.csv", csv_text)
    for path in (jsonl, csv):
        ds = load_dataset(path, text_column="sentence", label_column="intent")
        assert ds.labels == ["a", "b", "c"] and len(ds.train) == 18
    import datasets

    hf = datasets.Dataset.from_list(rows)
    ds = load_dataset(hf, text_column="sentence", label_column="intent")
    assert ds.train[0] == Example("a text 0", "a")


def test_hf_dataset_class_label_ids_become_names():
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    hf = datasets.Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]}, features=features)
    ds = load_dataset(hf)
    assert ds.labels == ["neg", "pos"] and ds.train[1].label == "pos"


def test_user_folder_with_labels_and_descriptions(tmp_path, toy_rows):
    _write(tmp_path / "train.jsonl", _jsonl(toy_rows))
    _write(tmp_path / "labels.json", json.dumps(["c", "b", "a"]))
    _write(tmp_path / "descriptions.json", json.dumps({"a": "A things", "b": "B things", "c": "C things"}))
    ds = load_dataset(tmp_path)
    assert ds.labels == ["c", "b", "a"] and ds.descriptions["b"] == "B things"


@pytest.mark.parametrize("content, match", [
    ("", r"d.jsonl: the file is empty"),
    ('{"text": "x", "label": "a"}\n{"text": "y"\n', r"d.jsonl:2: invalid JSON"),
    ('{"text": "x", "label": "a"}\n{"txt": "y", "label": "a"}\n', r"d.jsonl:2: missing column 'text'"),
    ('{"text": "  ", "label": "a"}\n', r"d.jsonl:1: column 'text' must be a non-empty string"),
    ('[1, 2]\n', r"d.jsonl:1: expected a JSON object"),
    (b'{"text": "ok", "label": "a"}\n{"text": "\xff\xfe", "label": "a"}\n', r"d.jsonl:2: invalid UTF-8"),
])
def test_bad_files_name_file_and_line(tmp_path, content, match):
    path = _write(tmp_path / "d.jsonl", content)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_class_with_too_few_examples_is_named(tmp_path):
    rows = [{"text": f"a{i}", "label": "a"} for i in range(5)] + [{"text": "b0", "label": "b"}]
    ds = load_dataset(_write(tmp_path / "d.jsonl", _jsonl(rows)))
    with pytest.raises(DataError, match=r"class 'b' .* has 1 distinct train examples"):
        few_shot_split(ds, k=2)


def test_duplicate_texts_do_not_count_as_distinct_seeds(tmp_path):
    rows = [{"text": "same", "label": "a"}] * 4 + [{"text": f"b{i}", "label": "b"} for i in range(3)]
    ds = load_dataset(_write(tmp_path / "d.jsonl", _jsonl(rows)))
    with pytest.raises(DataError, match="class 'a'"):
        few_shot_split(ds, k=2)


def test_description_problems(tmp_path, toy_rows):
    data = _write(tmp_path / "d.jsonl", _jsonl(toy_rows))
    unknown = _write(tmp_path / "u.json", json.dumps({"a": "x", "b": "y", "c": "z", "zzz": "?"}))
    with pytest.raises(DataError, match=r"u.json: description for unknown label\(s\) \['zzz'\]"):
        load_dataset(data, descriptions=unknown)
    missing = _write(tmp_path / "m.json", json.dumps({"a": "x", "b": "y"}))
    with pytest.raises(DataError, match=r"m.json: label\(s\) \['c'\] have no description"):
        load_dataset(data, descriptions=missing)


def test_duplicate_label_names_and_unlisted_labels(tmp_path, toy_rows):
    _write(tmp_path / "train.jsonl", _jsonl(toy_rows))
    _write(tmp_path / "labels.json", json.dumps(["a", "b", "a"]))
    with pytest.raises(DataError, match="duplicate label name 'a'"):
        load_dataset(tmp_path)
    _write(tmp_path / "labels.json", json.dumps(["a", "b"]))
    with pytest.raises(DataError, match=r"train.jsonl: row 13 has label 'c'"):
        load_dataset(tmp_path)


def test_dataset_object_rejects_unknown_label():
    with pytest.raises(DataError, match="label 'z' is not one of"):
        Dataset("x", ["a"], [Example("t", "z")])


def test_unknown_name_is_a_clear_error():
    with pytest.raises(DataError, match="neither a built-in name"):
        load_dataset("no_such_dataset")
