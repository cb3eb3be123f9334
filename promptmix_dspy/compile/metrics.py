"""Metrics for compiling: the relabeler's label accuracy and the generator's borderline-text score.

Both follow DSPy's metric protocol ``metric(gold, pred, trace=None, pred_name=None, pred_trace=None)`` and
return a float in [0, 1], so any optimizer can use them (BootstrapFewShot accepts a demo when the score reaches
its ``metric_threshold``). When GEPA asks for feedback on one predictor (``pred_name`` is set) they return
``dspy.Prediction(score=..., feedback=...)`` with text its reflection LM reads.
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from promptmix_dspy.method.cleanup import normalize
from promptmix_dspy.method.modules import Relabeler

__all__ = ["CallReport", "GeneratorMetric", "is_near_copy", "relabel_accuracy"]

logger = logging.getLogger(__name__)
DUPLICATE_REASONS = ("duplicate", "seed_copy")  # clean-up's reasons for a text that repeats one already seen
LENGTH_REASONS = ("too_short", "too_long")


def relabel_accuracy(gold: dspy.Example, pred: dspy.Prediction, trace: Any = None, pred_name: str | None = None,
                     pred_trace: Any = None) -> float | dspy.Prediction:
    """1.0 when the predicted label is the gold label, else 0.0 (with a sentence of feedback for GEPA)."""
    right = str(pred.label) == gold.label
    if pred_name is None:
        return float(right)
    feedback = ("Correct." if right else
                f"The text was classified as {pred.label!r}, but it belongs to {gold.label!r}.")
    return dspy.Prediction(score=float(right), feedback=feedback)


def is_near_copy(text: str, seeds: Sequence[str], threshold: float) -> bool:
    """True when the normalized text is at least ``threshold`` similar (difflib ratio) to some seed."""
    key = normalize(text)
    return any(difflib.SequenceMatcher(None, key, normalize(s)).ratio() >= threshold for s in seeds)


@dataclass
class CallReport:
    """How one generation call fared; ``score`` and ``feedback`` are what the metric returns."""

    majority: str
    requested: int
    hits: list[str] = field(default_factory=list)
    wrong: list[tuple[str, str | None]] = field(default_factory=list)  # (text, label the relabeler gave)
    near_copies: list[str] = field(default_factory=list)
    off_length: list[str] = field(default_factory=list)
    duplicates: int = 0
    penalty: float = 0.5

    @property
    def faults(self) -> int:
        return self.duplicates + len(self.near_copies) + len(self.off_length)

    @property
    def score(self) -> float:
        raw = (len(self.hits) - self.penalty * self.faults) / max(self.requested, 1)
        return round(min(1.0, max(0.0, raw)), 4)

    def feedback(self) -> str:
        lines = [f"Asked for {self.requested} texts mostly in class {self.majority!r}; "
                 f"{len(self.hits)} read as {self.majority!r} and were new (score {self.score})."]
        lines += [f"- {t!r} was classified as {label!r}, not {self.majority!r}." for t, label in self.wrong]
        lines += [f"- {t!r} nearly copies a seed example; write new texts." for t in self.near_copies]
        lines += [f"- {t!r} is much shorter or longer than the examples." for t in self.off_length]
        if self.duplicates:
            lines.append(f"- {self.duplicates} texts repeated another text or a seed example.")
        return "\n".join(lines)


@dataclass
class GeneratorMetric:
    """Scores one generation call: do its texts read as the intended majority class, and are they new?

    For a call that asks for ``n`` texts mostly in class A, the kept texts (after clean-up) are judged:

    - a *hit* is a text that the frozen relabeler labels A and that is neither a near-copy nor off-length;
    - a *near-copy* is at least ``near_copy`` similar (difflib ratio of normalized texts) to a seed;
    - a text is *off-length* when its word count is outside [``length_low`` x the shortest seed,
      ``length_high`` x the longest seed]; clean-up's too-short/too-long drops count too;
    - *duplicates* are the texts clean-up dropped as repeats of another text or exact copies of a seed.

    score = clamp((hits - penalty * (duplicates + near-copies + off-length)) / n, 0, 1). Missing texts and
    texts the relabeler puts in another class simply do not score. The relabeler is frozen: it runs outside the
    optimizer's trace, so it is never tuned and its calls never become the generator's demos.
    """

    relabeler: Relabeler
    seeds: list[str]
    penalty: float = 0.5
    near_copy: float = 0.85
    length_low: float = 0.5
    length_high: float = 2.0

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("the generator metric needs the seed texts")
        words = [len(s.split()) for s in self.seeds]
        self.min_words = max(1, math.floor(self.length_low * min(words)))
        self.max_words = math.ceil(self.length_high * max(words))

    def __call__(self, gold: dspy.Example, pred: dspy.Prediction, trace: Any = None,
                 pred_name: str | None = None, pred_trace: Any = None) -> float | dspy.Prediction:
        report = self.judge(gold, pred)
        if pred_name is None:
            return report.score
        return dspy.Prediction(score=report.score, feedback=report.feedback())

    def judge(self, gold: dspy.Example, pred: dspy.Prediction) -> CallReport:
        dropped = [reason for _, reason in (pred.dropped or [])]
        report = CallReport(gold.majority_class, int(gold.num_texts), penalty=self.penalty,
                            duplicates=sum(r in DUPLICATE_REASONS for r in dropped))
        report.off_length += [f"({r})" for r in dropped if r in LENGTH_REASONS]
        for text in pred.texts or []:
            self._judge_text(text, report)
        return report

    def _judge_text(self, text: str, report: CallReport) -> None:
        if is_near_copy(text, self.seeds, self.near_copy):
            report.near_copies.append(text)
        elif not self.min_words <= len(text.split()) <= self.max_words:
            report.off_length.append(text)
        else:
            label = self._label(text)
            if label == report.majority:
                report.hits.append(text)
            else:
                report.wrong.append((text, label))

    def _label(self, text: str) -> str | None:
        with dspy.context(trace=None):  # keep the judge's calls out of the optimizer's trace
            try:
                return self.relabeler(text=text).label
            except AdapterParseError as exc:
                logger.debug("the judge could not label %r: %s", text, exc)
                return None
