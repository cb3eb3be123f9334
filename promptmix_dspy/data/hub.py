"""Loading the built-in datasets from the Hugging Face hub, for users with internet.

Offline, ``data.load_dataset`` reads a data folder instead. Label names come from each hub dataset's own
ClassLabel feature, so ids are never mapped by hand (PromptMix's released code attached TREC's v1 names to
v2 ids: see data/trec6/SOURCE.md). Our canonical label order matches the data folders' labels.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptmix_dspy.data.builtins import BUILTIN_TASKS
from promptmix_dspy.data.types import Dataset, Example

__all__ = ["HUB_SOURCES", "load_from_hub"]


@dataclass(frozen=True)
class HubSource:
    path: str
    config: str | None
    text_column: str
    label_column: str
    labels: tuple[str, ...]
    skip: tuple[str, ...] = ()  # hub class names that mark unlabeled rows
    test_has_labels: bool = True


HUB_SOURCES: dict[str, HubSource] = {
    "trec6": HubSource("CogComp/trec", None, "text", "coarse_label",
                       ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")),
    "subj": HubSource("SetFit/subj", None, "text", "label_text", ("objective", "subjective")),
    "banking77": HubSource("PolyAI/banking77", None, "text", "label", ()),
    # RAFT's ClassLabel is (Unlabeled, complaint, no complaint); its test labels are not public.
    "twitter_complaints": HubSource("ought/raft", "twitter_complaints", "Tweet text", "Label",
                                    ("no complaint", "complaint"), skip=("Unlabeled",), test_has_labels=False),
}


def load_from_hub(name: str) -> Dataset:
    import datasets  # heavy, and only needed here

    src = HUB_SOURCES[name]
    dd = datasets.load_dataset(src.path, src.config)
    train = _rows(dd["train"], src)
    test = _rows(dd["test"], src) if src.test_has_labels and "test" in dd else []
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
