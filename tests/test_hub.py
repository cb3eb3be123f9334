"""Hub loading code, run offline against local DatasetDicts shaped like the hub datasets."""

from __future__ import annotations

import datasets
import pytest

from promptmix_dspy.data import hub as hub


def _dd(train: dict, test: dict, features: datasets.Features) -> datasets.DatasetDict:
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(train, features=features),
                                 "test": datasets.Dataset.from_dict(test, features=features)})


def test_trec_ids_map_through_the_hub_class_names(monkeypatch):
    # HF trec v2 coarse_label order is ABBR, ENTY, DESC, HUM, LOC, NUM: id 2 is DESC, not ENTY.
    names = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]
    feats = datasets.Features({"text": datasets.Value("string"), "coarse_label": datasets.ClassLabel(names=names),
                               "fine_label": datasets.Value("int32")})
    dd = _dd({"text": ["How did serfdom develop ?", "What does NASA stand for ?"], "coarse_label": [2, 0],
              "fine_label": [0, 0]}, {"text": ["Who ?"], "coarse_label": [3], "fine_label": [0]}, feats)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None: dd)
    ds = hub.load_from_hub("trec6")
    assert [(e.text, e.label) for e in ds.train] == [("How did serfdom develop ?", "DESC"),
                                                    ("What does NASA stand for ?", "ABBR")]
    assert ds.labels == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"] and ds.test[0].label == "HUM"


def test_raft_twitter_complaints_drops_unlabeled_and_has_no_test(monkeypatch):
    feats = datasets.Features({"Tweet text": datasets.Value("string"), "ID": datasets.Value("int32"),
                               "Label": datasets.ClassLabel(names=["Unlabeled", "complaint", "no complaint"])})
    dd = _dd({"Tweet text": ["@y broken again", "@x thanks", "@w ?"], "ID": [0, 1, 3], "Label": [1, 2, 0]},
             {"Tweet text": ["@z ?"], "ID": [2], "Label": [0]}, feats)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None: dd)
    ds = hub.load_from_hub("twitter_complaints")
    assert [e.label for e in ds.train] == ["complaint", "no complaint"] and ds.test == []
    assert ds.labels == ["no complaint", "complaint"]  # the PromptMix id order of our data folder


def test_hub_failure_becomes_how_to_supply_error(monkeypatch):
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.types import DataError

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.delenv("PROMPTMIX_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="no network.*--data-dir"):
        load_dataset("banking77")
