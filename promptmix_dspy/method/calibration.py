"""Calibrating an LLM classifier's class probabilities over a batch of texts, with no labels.

A small model prefers some answers whatever the text (it put 14 of 20 SUBJ texts in *objective* and 15 of 20
tweets in *complaint*), and a student distilled from it learns the same lean. Two remedies from the literature,
both dividing each text's probabilities by a per-class prior and renormalising over its candidates:

- ``batch`` (Batch Calibration, Zhou et al., ICLR 2024): the prior of a class is the mean of p(class | text) over
  the batch being labelled, counted over the texts whose candidates include it. A run's generated texts are such
  a batch, and PromptMix writes about as many for every class. No extra call.
- ``content-free`` (Contextual Calibration, Zhao et al., ICML 2021): the prior is p(class | a content-free text)
  (the mean over "N/A", "" and "[MASK]") for the same candidate set: three extra calls per candidate set
  (pipeline/relabel.py makes them).
- ``none``: the probabilities as the LLM gave them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["CALIBRATIONS", "CONTENT_FREE_TEXTS", "apply_prior", "batch_prior", "class_shares", "mean_probs"]

CALIBRATIONS = ("batch", "content-free", "none")
CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")


def batch_prior(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each class's mean probability over the rows that offer it (a row: {candidate: p})."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for probs in rows:
        for label, p in probs.items():
            sums[label] = sums.get(label, 0.0) + p
            counts[label] = counts.get(label, 0) + 1
    return {label: sums[label] / counts[label] for label in sums}


def mean_probs(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of several distributions over the same candidates (the content-free prior of one set)."""
    return batch_prior(rows)


def apply_prior(probs: Mapping[str, float], prior: Mapping[str, float], floor: float = 1e-6) -> dict[str, float]:
    """p(c) / prior(c), renormalised over the candidates of ``probs``."""
    scaled = {label: p / max(prior.get(label, 1.0), floor) for label, p in probs.items()}
    total = sum(scaled.values())
    if not total > 0:
        return dict(probs)
    return {label: v / total for label, v in scaled.items()}


def class_shares(labels: Sequence[str | None], classes: Sequence[str]) -> dict[str, float]:
    """The share of texts given each class (None: no class) — what calibration is meant to even out."""
    given = [label for label in labels if label is not None]
    return {c: round(sum(label == c for label in given) / len(given), 4) if given else 0.0 for c in classes}
