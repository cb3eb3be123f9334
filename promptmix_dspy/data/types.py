"""The data types every layer shares: a labelled ``Example``, a ``Dataset`` (splits, ordered labels, class
descriptions, a task description) that validates itself, and ``DataError``, whose message names the file and line, or the class."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataError", "Dataset", "Example", "check_descriptions", "check_labels"]


class DataError(ValueError):
    """Bad input data; the message names the file and line, or the class, at fault."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass
class Dataset:
    name: str
    labels: list[str]
    train: list[Example]
    test: list[Example] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)
    source: str = ""
    task: str | None = None  # one sentence: what the texts are and what their classes tell apart

    def __post_init__(self) -> None:
        check_labels(self.labels, where=f"dataset {self.name!r}")
        check_descriptions(self.descriptions, self.labels, where=f"descriptions of {self.name!r}")
        known = set(self.labels)
        for split_name, rows in (("train", self.train), ("test", self.test)):
            for i, ex in enumerate(rows):
                if ex.label not in known:
                    raise DataError(f"{self.name} {split_name} row {i + 1}: label {ex.label!r} is not one of "
                                    f"the dataset's labels {self.labels}")
        if not self.train:
            raise DataError(f"dataset {self.name!r} has an empty train split")

    def counts(self, split: str = "train") -> dict[str, int]:
        rows = getattr(self, split)
        out = {label: 0 for label in self.labels}
        for ex in rows:
            out[ex.label] += 1
        return out


def check_labels(labels: list[str], where: str) -> None:
    if not labels:
        raise DataError(f"{where}: no labels")
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise DataError(f"{where}: duplicate label name {label!r}")
        seen.add(label)


def check_descriptions(descriptions: dict[str, str], labels: list[str], where: str) -> None:
    if not descriptions:
        return
    unknown = [k for k in descriptions if k not in labels]
    if unknown:
        raise DataError(f"{where}: description for unknown label(s) {unknown}; labels are {labels}")
    missing = [label for label in labels if not str(descriptions.get(label, "")).strip()]
    if missing:
        raise DataError(f"{where}: label(s) {missing} have no description; give every label one, or none "
                        f"(then they are written by the LM)")
