"""DSPy modules: ClassDescriber, BorderlineGenerator, Relabeler, and PromptMix (generate, then relabel).

Each is a dspy.Module holding its predictors, so an optimizer sees and tunes every prompt and demo set.
"""

from __future__ import annotations

from typing import Sequence

import dspy

from promptmix_dspy.method.candidates import CandidateSelector
from promptmix_dspy.method.cleanup import clean_texts
from promptmix_dspy.method.signatures import (
    ClassCard,
    DescribeClass,
    GenerateBorderlineExamples,
    RelabelText,
    relabel_signature_for,
)

__all__ = ["BorderlineGenerator", "ClassDescriber", "PromptMix", "Relabeler", "share_phrase"]

RETRY_TEMPERATURE = 0.7  # a greedy answer that failed to parse would fail the same way again


def share_phrase(majority: str, minority: str | None, share: float) -> str:
    """'80% card_arrival, 20% card_delivery_estimate' (or '100% card_arrival' when nothing is mixed in)."""
    major = round(share * 100)
    if minority is None or major >= 100:
        return f"100% {majority}"
    return f"{major}% {majority}, {100 - major}% {minority}"


class ClassDescriber(dspy.Module):
    """Writes the one-sentence description of a class that has none."""

    def __init__(self) -> None:
        super().__init__()
        self.describe = dspy.Predict(DescribeClass)

    def forward(self, class_name: str, examples: list[str], other_classes: list[str],
                attempt: int = 0) -> dspy.Prediction:
        config = {"temperature": RETRY_TEMPERATURE, "rollout_id": f"retry{attempt}"} if attempt else {}
        pred = self.describe(class_name=class_name, examples=examples, other_classes=other_classes, config=config)
        return dspy.Prediction(description=" ".join(str(pred.description).split()))


class BorderlineGenerator(dspy.Module):
    """Asks for texts that mix two classes in a given proportion, then cleans them up.

    Repeated samples of the same prompt are distinct calls: ``sample_index`` becomes DSPy's rollout_id (with
    temperature > 0), so the cache keeps one answer per sample instead of replaying the first.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.generate = dspy.Predict(GenerateBorderlineExamples)
        self.temperature = temperature

    def forward(self, class_cards: list[ClassCard], majority_class: str, minority_class: str | None,
                majority_share: float, num_texts: int = 3, sample_index: int = 0, attempt: int = 0) -> dspy.Prediction:
        rollout = f"{sample_index}" if attempt == 0 else f"{sample_index}.retry{attempt}"
        pred = self.generate(
            class_cards=class_cards, majority_class=majority_class, minority_class=minority_class or "none",
            majority_share=share_phrase(majority_class, minority_class, majority_share), num_texts=num_texts,
            config={"temperature": self.temperature, "rollout_id": rollout},
        )
        seeds = [t for card in class_cards for t in card.examples]
        cleaned = clean_texts(pred.texts or [], seeds=seeds)
        return dspy.Prediction(texts=cleaned.kept, raw_texts=list(pred.texts or []), dropped=cleaned.dropped)


class Relabeler(dspy.Module):
    """Classifies a text among the classes nearest to it; the answer can only be one of those candidates."""

    def __init__(self, class_cards: Sequence[ClassCard], selector: CandidateSelector | None = None,
                 temperature: float = 0.0) -> None:
        super().__init__()
        self.relabel = dspy.Predict(RelabelText)
        self.cards = {card.name: card for card in class_cards}
        self.selector = selector or CandidateSelector({c.name: c.examples for c in class_cards},
                                                      top_k=len(class_cards))
        self.temperature = temperature

    @property
    def labels(self) -> list[str]:
        return list(self.cards)

    def forward(self, text: str, attempt: int = 0) -> dspy.Prediction:
        """``attempt`` > 0 retries an answer that did not parse as a fresh, slightly warmer sample."""
        names = self.selector(text)
        config = {"temperature": self.temperature}
        if attempt:
            config = {"temperature": max(self.temperature, RETRY_TEMPERATURE), "rollout_id": f"retry{attempt}"}
        pred = self.relabel(text=text, candidate_classes=[self.cards[n] for n in names],
                            signature=relabel_signature_for(names, self.relabel.signature), config=config)
        return dspy.Prediction(label=pred.label, candidates=names)


class PromptMix(dspy.Module):
    """The whole method for one mix call: generate borderline texts, then relabel each of them."""

    def __init__(self, class_cards: Sequence[ClassCard], selector: CandidateSelector | None = None,
                 generation_temperature: float = 1.0, relabel_temperature: float = 0.0) -> None:
        super().__init__()
        self.cards = {card.name: card for card in class_cards}
        self.generator = BorderlineGenerator(generation_temperature)
        self.relabeler = Relabeler(class_cards, selector, relabel_temperature)

    def forward(self, majority_class: str, minority_class: str | None, majority_share: float,
                group: Sequence[str], num_texts: int = 3, sample_index: int = 0) -> dspy.Prediction:
        generated = self.generator(class_cards=[self.cards[c] for c in group], majority_class=majority_class,
                                   minority_class=minority_class, majority_share=majority_share,
                                   num_texts=num_texts, sample_index=sample_index)
        rows = [{"text": t, "generated_for": majority_class, "label": self.relabeler(text=t).label}
                for t in generated.texts]
        return dspy.Prediction(rows=rows, dropped=generated.dropped)
