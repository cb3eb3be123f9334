"""The compile metrics: relabel accuracy and the generator's borderline score, with a stub judge."""

from __future__ import annotations

import dspy
import pytest

from promptmix_dspy.compile.metrics import GeneratorMetric, relabel_accuracy
from promptmix_dspy.method.cleanup import is_near_copy

SEEDS = ["what time does the match start tonight", "who won the cup final last year"]


class StubJudge:
    """Labels a text 'sports' when it mentions a ball or a match, else 'weather'; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, text: str) -> dspy.Prediction:
        self.seen.append(text)
        return dspy.Prediction(label="sports" if ("ball" in text or "match" in text) else "weather")


def _call(n: int = 3) -> dspy.Example:
    return dspy.Example(majority_class="sports", num_texts=n)


def _pred(texts: list[str], dropped: list[tuple[str, str]] = ()) -> dspy.Prediction:
    return dspy.Prediction(texts=texts, raw_texts=texts, dropped=list(dropped))


def test_relabel_accuracy_and_its_feedback():
    gold = dspy.Example(text="t", label="sports")
    assert relabel_accuracy(gold, dspy.Prediction(label="sports")) == 1.0
    assert relabel_accuracy(gold, dspy.Prediction(label="weather")) == 0.0
    fb = relabel_accuracy(gold, dspy.Prediction(label="weather"), None, "relabel", None)
    assert fb.score == 0.0 and "'weather'" in fb.feedback and "'sports'" in fb.feedback


def test_three_new_in_class_texts_score_one():
    metric = GeneratorMetric(StubJudge(), SEEDS)
    texts = ["the ball went over the fence again", "a late match was called off for rain",
             "the ball was kicked into the crowd"]
    assert metric(_call(), _pred(texts)) == 1.0


def test_off_class_texts_do_not_score_and_missing_ones_count_as_zero():
    metric = GeneratorMetric(StubJudge(), SEEDS)
    texts = ["the ball went over the fence again", "sunny skies are expected all week long"]
    assert metric(_call(), _pred(texts)) == pytest.approx(1 / 3, abs=1e-4)


def test_duplicates_near_copies_and_off_length_texts_are_penalised():
    judge = StubJudge()
    metric = GeneratorMetric(judge, SEEDS)
    texts = ["the ball went over the fence again", "what time does the match start tonight ?",
             "ball", "the ball " * 30]
    report = metric.judge(_call(4), _pred(texts, dropped=[("x", "duplicate")]))
    assert len(report.hits) == 1 and len(report.near_copies) == 1 and len(report.off_length) == 2
    assert report.duplicates == 1
    assert report.score == 0.0  # (1 hit - 0.5 * 4 faults) / 4 is below zero, clamped
    assert judge.seen == ["the ball went over the fence again"]  # faulty texts are not even judged


def test_one_fault_costs_half_a_hit():
    metric = GeneratorMetric(StubJudge(), SEEDS)
    texts = ["the ball went over the fence again", "a late match was called off for rain",
             "the ball was kicked into the crowd"]
    assert metric(_call(), _pred(texts, dropped=[("x", "seed_copy")])) == pytest.approx(2.5 / 3, abs=1e-4)


def test_gepa_gets_feedback_naming_each_problem():
    metric = GeneratorMetric(StubJudge(), SEEDS)
    out = metric(_call(), _pred(["sunny skies are expected all week long", "who won the cup final last year !"]),
                 None, "generate", None)
    assert out.score == 0.0
    assert "classified as 'weather'" in out.feedback and "nearly copies a seed" in out.feedback


def test_near_copy_is_about_normalized_similarity():
    assert is_near_copy("Who won the Cup final last year?", SEEDS, 0.85)
    assert not is_near_copy("who scored the winning goal", SEEDS, 0.85)


def test_a_metric_needs_seeds():
    with pytest.raises(ValueError, match="seed"):
        GeneratorMetric(StubJudge(), [])
