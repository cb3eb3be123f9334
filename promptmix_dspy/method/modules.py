"""DSPy modules: ClassDescriber, TaskDescriber, BorderlineGenerator, Relabeler, and PromptMix (generate, then
relabel).

Each is a dspy.Module holding its predictors, so an optimizer sees and tunes every prompt and demo set.
"""

from __future__ import annotations

import hashlib
import random
from typing import Sequence

import dspy

from promptmix_dspy.method.candidates import CandidateSelector
from promptmix_dspy.method.cleanup import clean_texts
from promptmix_dspy.method.signatures import (
    ClassCard,
    DescribeClass,
    DescribeTask,
    GenerateBorderlineExamples,
    RelabelTexts,
    relabel_signature_for,
    with_task,
)

__all__ = ["DEFAULT_TOP_K", "BorderlineGenerator", "ClassDescriber", "PromptMix", "Relabeler", "TaskDescriber",
           "seed_demo", "share_phrase"]

RETRY_TEMPERATURE = 0.7  # a greedy answer that failed to parse would fail the same way again
DEFAULT_TOP_K = 5  # the paper's: the relabeler sees the 5 classes nearest the text


def share_phrase(majority: str, minority: str | None, share: float) -> str:
    """'80% card_arrival, 20% card_delivery_estimate' (or '100% card_arrival' when nothing is mixed in)."""
    major = round(share * 100)
    if minority is None or major >= 100:
        return f"100% {majority}"
    return f"{major}% {majority}, {100 - major}% {minority}"


def _retry_config(temperature: float, attempt: int, rollout: str = "") -> dict:
    if not attempt:
        return {"temperature": temperature, **({"rollout_id": rollout} if rollout else {})}
    tag = f"{rollout}.retry{attempt}" if rollout else f"retry{attempt}"
    return {"temperature": max(temperature, RETRY_TEMPERATURE), "rollout_id": tag}


class ClassDescriber(dspy.Module):
    """Writes the one-sentence description of a class that has none."""

    def __init__(self) -> None:
        super().__init__()
        self.describe = dspy.Predict(DescribeClass)

    def forward(self, class_name: str, examples: list[str], other_classes: list[str],
                attempt: int = 0) -> dspy.Prediction:
        pred = self.describe(class_name=class_name, examples=examples, other_classes=other_classes,
                             config=_retry_config(0.0, attempt) if attempt else {})
        return dspy.Prediction(description=" ".join(str(pred.description).split()))


class TaskDescriber(dspy.Module):
    """Writes the one-sentence task description of a dataset that has none, from class names and seeds."""

    def __init__(self) -> None:
        super().__init__()
        self.describe = dspy.Predict(DescribeTask)

    def forward(self, seeds_by_label: dict[str, list[str]], attempt: int = 0) -> dspy.Prediction:
        lines = [f"{label}: {text}" for label, texts in seeds_by_label.items() for text in texts]
        pred = self.describe(class_examples=lines, config=_retry_config(0.0, attempt) if attempt else {})
        return dspy.Prediction(task=" ".join(str(pred.task).split()))


class BorderlineGenerator(dspy.Module):
    """Asks for texts that mix two classes in a given proportion, then cleans them up.

    Repeated samples of the same prompt are distinct calls: ``sample_index`` becomes DSPy's rollout_id (with
    temperature > 0), so the cache keeps one answer per sample instead of replaying the first. Clean-up checks
    the texts against ``all_seeds`` (every class's seeds, not only the group's) and the class names and
    descriptions; ``already_written`` asks for texts other than those (a re-ask for the ones clean-up dropped).
    """

    def __init__(self, temperature: float = 1.0, task: str | None = None,
                 all_seeds: Sequence[str] = (), class_cards: Sequence[ClassCard] = ()) -> None:
        super().__init__()
        self.generate = dspy.Predict(with_task(GenerateBorderlineExamples, task))
        self.temperature = temperature
        self.all_seeds = list(all_seeds)
        self.class_names = [c.name for c in class_cards]
        self.descriptions = [c.description for c in class_cards]

    def forward(self, class_cards: list[ClassCard], majority_class: str, minority_class: str | None,
                majority_share: float, num_texts: int = 3, sample_index: int = 0, attempt: int = 0,
                already_written: Sequence[str] = (), seen: set[str] | None = None) -> dspy.Prediction:
        pred = self.generate(
            class_cards=class_cards, majority_class=majority_class, minority_class=minority_class or "none",
            majority_share=share_phrase(majority_class, minority_class, majority_share),
            already_written=list(already_written), num_texts=num_texts,
            config=_retry_config(self.temperature, attempt, f"{sample_index}"),
        )
        seeds = self.all_seeds or [t for card in class_cards for t in card.examples]
        names = self.class_names or [card.name for card in class_cards]
        descriptions = self.descriptions or [card.description for card in class_cards]
        cleaned = clean_texts(pred.texts or [], seeds=seeds, class_names=names, descriptions=descriptions,
                              seen=seen)
        return dspy.Prediction(texts=cleaned.kept, raw_texts=list(pred.texts or []), dropped=cleaned.dropped)


def seed_demo(cards: Sequence[ClassCard], exclude: set[str] = frozenset()) -> dspy.Example | None:
    """The candidates' seeds as one solved example of the task, in an order shuffled by the seeds themselves
    (the same cards always give the same demo; no periodic pattern of classes to copy); ``exclude`` leaves texts
    out (leave-one-out scoring)."""
    pairs = [(text, c.name) for c in cards for text in c.examples if text not in exclude]
    if not pairs:
        return None
    random.Random(hashlib.sha256("\x1f".join(t for t, _ in pairs).encode()).hexdigest()).shuffle(pairs)
    return dspy.Example(texts=[t for t, _ in pairs],
                        classes_for_texts={str(i): name for i, (_, name) in enumerate(pairs, start=1)})


class Relabeler(dspy.Module):
    """Classifies texts among the classes nearest to them; every answer can only be one of those candidates.

    One call labels a batch of texts over one candidate set (a batch of one is the paper's protocol). The
    candidates' seeds are shown as one solved example (``seed_demo``) before the texts, and the cards carry the
    descriptions: a small model classifies better from a worked example than from examples inside a card
    (benchmarks/local_llm.py). Demos an optimizer compiled into the predictor replace that example;
    ``worked_example=False`` shows the descriptions alone. ``top_k`` (default 5, the paper's) applies when no
    ``selector`` is given.
    """

    def __init__(self, class_cards: Sequence[ClassCard], selector: CandidateSelector | None = None,
                 temperature: float = 0.0, task: str | None = None, top_k: int = DEFAULT_TOP_K,
                 worked_example: bool = True) -> None:
        super().__init__()
        self.relabel = dspy.Predict(with_task(RelabelTexts, task))
        self.cards = {card.name: card for card in class_cards}
        self.selector = selector or CandidateSelector({c.name: c.examples for c in class_cards}, top_k=top_k)
        self.temperature = temperature
        self.worked_example = worked_example

    @property
    def labels(self) -> list[str]:
        return list(self.cards)

    def forward(self, texts: Sequence[str] | None = None, text: str | None = None, attempt: int = 0,
                candidates: Sequence[str] | None = None) -> dspy.Prediction:
        """Label ``texts`` (or one ``text``: the prediction then has ``label``). ``attempt`` > 0 retries an
        answer that did not parse as a fresh, slightly warmer sample. A text the answer left out gets None."""
        batch = [text] if text is not None else list(texts or [])
        if not batch:
            raise ValueError("nothing to relabel")
        names = list(candidates) if candidates else self._candidates(batch)
        cards = self._cards(names, batch)
        pred = self.relabel(candidate_classes=[c.model_copy(update={"examples": []}) for c in cards], texts=batch,
                            demos=self._demos(cards, batch), config=_retry_config(self.temperature, attempt),
                            signature=relabel_signature_for(names, self.relabel.signature))
        answers = pred.classes_for_texts or {}
        classes = [answers.get(str(i)) for i in range(1, len(batch) + 1)]
        if text is not None and classes[0] is None:
            raise ValueError("the answer gave the text no class")
        out = dspy.Prediction(classes=classes, candidates=names)
        if text is not None:
            out.label = classes[0]
        return out

    def _candidates(self, batch: list[str]) -> list[str]:
        """The texts' top-k classes in the dataset's label order: the same set, the same prompt prefix."""
        return self.selector.for_batch(batch)

    def _cards(self, names: list[str], batch: list[str]) -> list[ClassCard]:
        return [self.cards[n] for n in names]

    def _demos(self, cards: list[ClassCard], batch: list[str]) -> list:
        if self.relabel.demos:
            return list(self.relabel.demos)
        if not self.worked_example:
            return []
        demo = seed_demo(cards, exclude=set(batch))
        return [demo] if demo is not None else []


class PromptMix(dspy.Module):
    """The whole method for one mix call: generate borderline texts, then relabel them."""

    def __init__(self, class_cards: Sequence[ClassCard], selector: CandidateSelector | None = None,
                 generation_temperature: float = 1.0, relabel_temperature: float = 0.0,
                 task: str | None = None) -> None:
        super().__init__()
        self.cards = {card.name: card for card in class_cards}
        self.task = task
        seeds = [t for card in class_cards for t in card.examples]
        self.generator = BorderlineGenerator(generation_temperature, task, seeds, class_cards)
        self.relabeler = Relabeler(class_cards, selector, relabel_temperature, task)

    def forward(self, majority_class: str, minority_class: str | None, majority_share: float,
                group: Sequence[str], num_texts: int = 3, sample_index: int = 0) -> dspy.Prediction:
        generated = self.generator(class_cards=[self.cards[c] for c in group], majority_class=majority_class,
                                   minority_class=minority_class, majority_share=majority_share,
                                   num_texts=num_texts, sample_index=sample_index)
        labels = self.relabeler(texts=generated.texts).classes if generated.texts else []
        rows = [{"text": t, "generated_for": majority_class, "label": label}
                for t, label in zip(generated.texts, labels)]
        return dspy.Prediction(rows=rows, dropped=generated.dropped)
