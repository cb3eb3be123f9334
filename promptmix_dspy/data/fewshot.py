"""The seeded, stratified few-shot split: k seeds per class, an optional dev split from the rest of train, and
the test split passed through untouched (it is for final evaluation only)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable

from promptmix_dspy.data.types import DataError, Dataset, Example
from promptmix_dspy.store.identity import texts_sha256

__all__ = ["FewShotSplit", "few_shot_split"]


@dataclass
class FewShotSplit:
    """The seeds (k per class) the method may see, a dev split drawn from the rest of train, and the test split."""

    dataset: Dataset
    k: int
    seed: int
    seeds: list[Example]
    dev: list[Example]
    test: list[Example]

    @property
    def labels(self) -> list[str]:
        return self.dataset.labels

    def seeds_by_label(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {label: [] for label in self.labels}
        for ex in self.seeds:
            out[ex.label].append(ex.text)
        return out

    def seeds_sha256(self) -> str:
        """sha256 of the seeds (text, label, in order): what a method was allowed to see."""
        return texts_sha256(self.seeds, ("text", "label"))

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.name, "k": self.k, "seed": self.seed,
                "seeds": [e.to_dict() for e in self.seeds], "dev": [e.to_dict() for e in self.dev]}


def few_shot_split(dataset: Dataset, k: int = 2, seed: int = 0, dev_per_class: int = 0) -> FewShotSplit:
    """Draw k distinct seed texts per class, then dev_per_class more per class from the rest of train.

    Stratified and seeded: one ``random.Random(seed)`` visits classes in label order for the seeds, and a second
    one (seeded from ``seed`` too) draws the dev texts, so the seeds are the same with or without a dev split. The
    test split is passed through untouched; it is for final evaluation only.
    """
    if k < 1:
        raise ValueError(f"k (shots per class) must be >= 1, got {k}")
    if dev_per_class < 0:
        raise ValueError(f"dev_per_class must be >= 0, got {dev_per_class}")
    rng, dev_rng = random.Random(seed), random.Random(f"{seed}:dev")
    by_label = _unique_texts_by_label(dataset.train, dataset.labels)
    seeds, dev = [], []
    for label in dataset.labels:
        texts = by_label[label]
        if len(texts) < k + dev_per_class:
            raise DataError(f"class {label!r} of {dataset.name!r} has {len(texts)} distinct train examples, "
                            f"fewer than the {k} shots + {dev_per_class} dev examples asked for")
        picked = rng.sample(texts, k)
        seeds += [Example(t, label) for t in picked]
        if dev_per_class:  # its own generator: asking for a dev split never changes the seeds
            rest = [t for t in texts if t not in set(picked)]
            dev += [Example(t, label) for t in dev_rng.sample(rest, dev_per_class)]
    return FewShotSplit(dataset=dataset, k=k, seed=seed, seeds=seeds, dev=dev, test=list(dataset.test))


def _unique_texts_by_label(rows: Iterable[Example], labels: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {label: [] for label in labels}
    seen: set[tuple[str, str]] = set()
    for ex in rows:
        if (ex.text, ex.label) not in seen:
            seen.add((ex.text, ex.label))
            out[ex.label].append(ex.text)
    return out
