"""Hub loading code, run offline against local DatasetDicts shaped like the hub datasets."""

from __future__ import annotations

import datasets
import pytest

from promptmix_dspy.data import hub as hub


def _parquet(root, config: str, split: str, rows: dict, features: datasets.Features) -> None:
    """A real Parquet file laid out like the hub's conversion branch: <config>/<split>/0000.parquet."""
    folder = root / config / split
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "0000.parquet"))


def test_trec_ids_map_through_the_class_names_stored_in_the_parquet(tmp_path):
    # HF trec v2 coarse_label order is ABBR, ENTY, DESC, HUM, LOC, NUM: id 2 is DESC, not ENTY.
    names = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]
    feats = datasets.Features({"text": datasets.Value("string"), "coarse_label": datasets.ClassLabel(names=names),
                               "fine_label": datasets.Value("int32")})
    _parquet(tmp_path, "default", "train", {"text": ["How did serfdom develop ?", "What does NASA stand for ?"],
                                            "coarse_label": [2, 0], "fine_label": [0, 0]}, feats)
    _parquet(tmp_path, "default", "test", {"text": ["Who ?"], "coarse_label": [3], "fine_label": [0]}, feats)
    ds = hub.load_from_hub("trec6", root=str(tmp_path))
    assert [(e.text, e.label) for e in ds.train] == [("How did serfdom develop ?", "DESC"),
                                                    ("What does NASA stand for ?", "ABBR")]
    assert ds.labels == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"] and ds.test[0].label == "HUM"
    assert ds.source == "hf://CogComp/trec"


def test_raft_twitter_complaints_reads_the_script_free_copy_drops_unlabeled_and_has_no_test(tmp_path):
    feats = datasets.Features({"Tweet text": datasets.Value("string"), "ID": datasets.Value("int32"),
                               "Label": datasets.ClassLabel(names=["Unlabeled", "complaint", "no complaint"])})
    _parquet(tmp_path, "twitter_complaints", "train", {"Tweet text": ["@y broken again", "@x thanks", "@w ?"],
                                                        "ID": [0, 1, 3], "Label": [1, 2, 0]}, feats)
    # no test files at all: the loader must not ask for the unlabeled test split
    ds = hub.load_from_hub("twitter_complaints", root=str(tmp_path))
    assert [e.label for e in ds.train] == ["complaint", "no complaint"] and ds.test == []
    assert ds.labels == ["no complaint", "complaint"]  # the PromptMix id order of our data folder


def test_subj_string_labels_and_banking77_names_from_the_file(tmp_path):
    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64"),
                               "label_text": datasets.Value("string")})
    _parquet(tmp_path / "subj", "default", "train", {"text": ["the film opens in paris", "a wonderful mess"],
                                                     "label": [0, 1], "label_text": ["objective", "subjective"]},
             feats)
    _parquet(tmp_path / "subj", "default", "test", {"text": ["it rains"], "label": [0], "label_text": ["objective"]},
             feats)
    ds = hub.load_from_hub("subj", root=str(tmp_path / "subj"))
    assert [e.label for e in ds.train + ds.test] == ["objective", "subjective", "objective"]
    names = ["activate_my_card", "age_limit", "apple_pay_or_google_pay"]
    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    _parquet(tmp_path / "b77", "default", "train", {"text": ["how old must I be", "activate it"], "label": [1, 0]},
             feats)
    _parquet(tmp_path / "b77", "default", "test", {"text": ["google pay?"], "label": [2]}, feats)
    ds = hub.load_from_hub("banking77", root=str(tmp_path / "b77"))
    assert ds.labels == names and [e.label for e in ds.train] == ["age_limit", "activate_my_card"]
    assert ds.test[0].label == "apple_pay_or_google_pay"


def test_the_hub_paths_point_at_the_parquet_conversion_branch():
    src = hub.HUB_SOURCES["twitter_complaints"]
    assert src.files(hub.HUB_PARQUET_ROOT, "train") == \
        "hf://datasets/ought/raft@refs%2Fconvert%2Fparquet/twitter_complaints/train/*.parquet"
    assert hub.HUB_SOURCES["trec6"].files(hub.HUB_PARQUET_ROOT, "test") == \
        "hf://datasets/CogComp/trec@refs%2Fconvert%2Fparquet/default/test/*.parquet"


def test_hub_failure_becomes_how_to_supply_error(monkeypatch):
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.types import DataError

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.delenv("PROMPTMIX_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="no network.*--data-dir"):
        load_dataset("banking77")
