"""Metrics for compiling: the relabeler's label accuracy and the generator's borderline-text score.

Both follow DSPy's metric protocol ``metric(gold, pred, trace=None, pred_name=None, pred_trace=None)`` and
return a float in [0, 1], so any optimizer can use them (BootstrapFewShot accepts a demo when the score reaches
its ``metric_threshold``). When GEPA asks for feedback on one predictor (``pred_name`` is set) they return
``dspy.Prediction(score=..., feedback=...)`` with text its reflection LM reads.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from promptmix_dspy.method.cleanup import is_near_copy
from promptmix_dspy.method.modules import Relabeler

__all__ = ["CallReport", "GeneratorMetric", "relabel_accuracy"]

logger = logging.getLogger(__name__)
# clean-up's reasons for a text that repeats one already seen, a seed, a class name or a description
DUPLICATE_REASONS = ("duplicate", "seed_copy", "class_name", "description_copy")
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


@dataclass
class CallReport:
    """How one generation call fared; ``score`` and ``feedback`` are what the metric returns."""

    majority: str
    requested: int
    hits: list[str] = field(default_factory=list)
    off_mix: list[str] = field(default_factory=list)  # hits whose nearest other class is not the minority
    wrong: list[tuple[str, str | None]] = field(default_factory=list)  # (text, label the relabeler gave)
    near_copies: list[str] = field(default_factory=list)
    off_length: list[str] = field(default_factory=list)
    duplicates: int = 0
    penalty: float = 0.5
    off_mix_credit: float = 0.75
    minority: str | None = None

    @property
    def faults(self) -> int:
        return self.duplicates + len(self.near_copies) + len(self.off_length)

    @property
    def score(self) -> float:
        credit = len(self.hits) - (1 - self.off_mix_credit) * len(self.off_mix)
        raw = (credit - self.penalty * self.faults) / max(self.requested, 1)
        return round(min(1.0, max(0.0, raw)), 4)

    def feedback(self) -> str:
        lines = [f"Asked for {self.requested} texts mostly in class {self.majority!r}; "
                 f"{len(self.hits)} read as {self.majority!r} and were new (score {self.score})."]
        lines += [f"- {t!r} was classified as {label!r}, not {self.majority!r}." for t, label in self.wrong]
        lines += [f"- {t!r} does not lean toward {self.minority!r} as a borderline text should."
                  for t in self.off_mix]
        lines += [f"- {t!r} nearly copies a seed example; write new texts." for t in self.near_copies]
        lines += [f"- {t!r} is much shorter or longer than the examples." for t in self.off_length]
        if self.duplicates:
            lines.append(f"- {self.duplicates} texts repeated another text or a seed example.")
        return "\n".join(lines)


@dataclass
class GeneratorMetric:
    """Scores one generation call by what makes a student better: texts that still read as the intended
    majority class, lean toward the minority class, are new and distinct, and have the dataset's length.

    For a call that asks for ``n`` texts mostly in class A (and partly in B), the kept texts (after clean-up,
    which drops copies of any seed and repeats) are judged:

    - a *hit* is a text that the frozen relabeler labels A and that is neither a near-copy nor off-length; a hit
      of a mix call whose nearest other class (by the relabeler's sentence embeddings) is not B earns
      ``off_mix_credit`` (it is in class A but not on the A/B boundary the call asked for);
    - a *near-copy* is at least ``near_copy`` similar (difflib ratio of normalized texts) to any seed;
    - a text is *off-length* when its word count is outside [``length_low`` x the shortest seed,
      ``length_high`` x the longest seed]; clean-up's too-short/too-long drops count too;
    - *duplicates* are the texts clean-up dropped as repeats of another text, copies of a seed, a class name or
      a description.

    score = clamp((hits - (1 - off_mix_credit) * off-mix hits - penalty * (duplicates + near-copies +
    off-length)) / n, 0, 1). Missing texts and texts the relabeler puts in another class simply do not score.
    The relabeler is frozen: it runs outside the optimizer's trace, so it is never tuned and its calls never
    become the generator's demos; its labels are cached, so a text is judged once however often it is scored.
    """

    relabeler: Relabeler
    seeds: list[str]
    penalty: float = 0.5
    near_copy: float = 0.85
    length_low: float = 0.5
    length_high: float = 2.0
    off_mix_credit: float = 0.75
    _labels: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
        minority = gold.get("minority_class")
        report = CallReport(gold.majority_class, int(gold.num_texts), penalty=self.penalty,
                            off_mix_credit=self.off_mix_credit,
                            minority=None if minority in (None, "none") else minority,
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
            if label != report.majority:
                report.wrong.append((text, label))
                return
            report.hits.append(text)
            if report.minority and self._runner_up(text, report.majority) not in (None, report.minority):
                report.off_mix.append(text)

    def _runner_up(self, text: str, majority: str) -> str | None:
        """The class nearest ``text`` after ``majority`` by the relabeler's embeddings (None without them)."""
        selector = self.relabeler.selector
        if selector.centroids is None:
            return None
        scores = selector.centroids @ selector.encoder.encode([text])[0]
        ranked = [selector.labels[i] for i in scores.argsort()[::-1]]
        return next(label for label in ranked if label != majority)

    def _label(self, text: str) -> str | None:
        with self._lock:
            if text in self._labels:
                return self._labels[text]
        with dspy.context(trace=None):  # keep the judge's calls out of the optimizer's trace
            try:
                label = self.relabeler(text=text).label
            except (AdapterParseError, ValueError) as exc:
                logger.debug("the judge could not label %r: %s", text, exc)
                return None
        with self._lock:
            self._labels[text] = label
        return label
