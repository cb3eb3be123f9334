"""Loading the built-in datasets from the Hugging Face hub, for users with internet.

Offline, ``data.load_dataset`` reads a data folder instead. Label names come from each hub dataset's own
ClassLabel feature, so ids are never mapped by hand (PromptMix's released code attached TREC's v1 names to
v2 ids: see data/trec6/SOURCE.md). Our canonical label order matches the data folders' labels.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptmix_dspy.data.builtins import BUILTIN_TASKS
from promptmix_dspy.data.types import Dataset, Example

__all__ = ["HUB_PARQUET_ROOT", "HUB_SOURCES", "load_from_hub"]


# Every hub dataset has a script-free Parquet conversion on the branch refs/convert/parquet, laid out as
# <config>/<split>/*.parquet with the ClassLabel names kept in the files' metadata. Reading that branch works
# for script-based datasets too (ought/raft has a loading script, which datasets >= 4 refuses to run).
HUB_PARQUET_ROOT = "hf://datasets/{path}@refs%2Fconvert%2Fparquet"


@dataclass(frozen=True)
class HubSource:
    path: str
    config: str | None
    text_column: str
    label_column: str
    labels: tuple[str, ...]
    skip: tuple[str, ...] = ()  # hub class names that mark unlabeled rows
    test_has_labels: bool = True

    def files(self, root: str, split: str) -> str:
        return f"{root.format(path=self.path)}/{self.config or 'default'}/{split}/*.parquet"


HUB_SOURCES: dict[str, HubSource] = {
    "trec6": HubSource("CogComp/trec", None, "text", "coarse_label",
                       ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")),
    "subj": HubSource("SetFit/subj", None, "text", "label_text", ("objective", "subjective")),
    "banking77": HubSource("PolyAI/banking77", None, "text", "label", ()),
    # RAFT's ClassLabel is (Unlabeled, complaint, no complaint). Its test split is unlabeled by design (RAFT is
    # a leaderboard; the gold labels are not public): from the hub you get the 50 train tweets and no test
    # split. Our data folder's test labels come from the original paper's release (data/*/SOURCE.md).
    "twitter_complaints": HubSource("ought/raft", "twitter_complaints", "Tweet text", "Label",
                                    ("no complaint", "complaint"), skip=("Unlabeled",), test_has_labels=False),
}


def load_from_hub(name: str, root: str = HUB_PARQUET_ROOT) -> Dataset:
    """A built-in dataset from its hub Parquet conversion (``root``: that branch, or a local copy of its layout)."""
    import datasets  # heavy, and only needed here

    src = HUB_SOURCES[name]
    splits = ["train"] + (["test"] if src.test_has_labels else [])
    dd = datasets.load_dataset("parquet", data_files={split: src.files(root, split) for split in splits})
    train = _rows(dd["train"], src)
    test = _rows(dd["test"], src) if "test" in dd else []
    labels = list(src.labels) or _feature_names(dd["train"], src.label_column)
    return Dataset(name, labels, train, test, {}, source=f"hf://{src.path}" + (f"/{src.config}" if src.config else ""),
                   task=BUILTIN_TASKS.get(name))


def _feature_names(ds, column: str) -> list[str]:
    return list(ds.features[column].names)


def _rows(ds, src: HubSource) -> list[Example]:
    feature = ds.features[src.label_column]
    names = getattr(feature, "names", None)
    out = []
    for rec in ds:
        value = rec[src.label_column]
        label = names[value] if names is not None and isinstance(value, int) else str(value)
        if label not in src.skip:
            out.append(Example(rec[src.text_column], label))
    return out
