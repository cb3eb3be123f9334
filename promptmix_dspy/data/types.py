"""The data types every layer shares: a labelled ``Example``, a ``Dataset`` (splits, ordered labels, class
descriptions, a task description) that validates itself, and ``DataError``, whose message names the file and line, or the class."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptmix_dspy.store.identity import content_sha256, texts_sha256

__all__ = ["DataError", "Dataset", "Example", "check_descriptions", "check_labels"]


class DataError(ValueError):
    """Bad input data; the message names the file and line, or the class, at fault."""


@dataclass(frozen=True)
class Example:
    """A labelled text. ``probs`` (optional): a probability for each class, as (label, p) pairs, when the label
    came from a classifier that gave them (a relabeled generated text); a student may train on them as a soft
    target. A seed has none: its label is certain."""

    text: str
    label: str
    probs: tuple[tuple[str, float], ...] | None = None

    def to_dict(self) -> dict:
        out = {"text": self.text, "label": self.label}
        if self.probs is not None:
            out["probs"] = dict(self.probs)
        return out

    @property
    def confidence(self) -> float:
        """The probability of ``label`` (1.0 without probabilities)."""
        return dict(self.probs).get(self.label, 0.0) if self.probs else 1.0


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

    def identity(self) -> dict[str, str]:
        """sha256 of the content read: each split's (text, label) rows in order, the ordered labels, the
        descriptions and the task; ``sha256`` covers them all. Another data folder, a hub copy in another label
        order, or one edited row gives another identity."""
        parts = {"train": texts_sha256(self.train, ("text", "label")),
                 "test": texts_sha256(self.test, ("text", "label")),
                 "labels": content_sha256(self.labels), "descriptions": content_sha256(self.descriptions),
                 "task": content_sha256(self.task)}
        return {**parts, "sha256": content_sha256(parts)}

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
