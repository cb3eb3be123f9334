"""What an optimizer is given for each program: the student module, its training and dev examples, its metric.

The relabeler learns from the seeds and is scored on a dev split drawn from the rest of train, or, when the
user has no such split (the realistic few-shot setting), leave-one-out over the seeds: ``HoldOutRelabeler``
removes the text it classifies from every class card and from every demo, so a seed is never scored against
itself. The generator learns from mix calls (the same plan the augment run uses) and is scored by
``GeneratorMetric`` with a frozen relabeler. The test split is never used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import dspy

from promptmix_dspy.compile.metrics import GeneratorMetric, relabel_accuracy
from promptmix_dspy.data.fewshot import FewShotSplit
from promptmix_dspy.method.candidates import CandidateSelector
from promptmix_dspy.method.mixing import MixCall, mix_plan
from promptmix_dspy.method.modules import BorderlineGenerator, Relabeler, share_phrase
from promptmix_dspy.method.signatures import ClassCard

__all__ = ["DEV_CALL_START", "HoldOutRelabeler", "Task", "generator_task", "relabeler_task", "without_text"]

DEV_CALL_START = 1000  # sample_index of the generator's dev calls: fresh draws, never a training call's
GENERATOR_INPUTS = ("class_cards", "majority_class", "minority_class", "majority_share", "num_texts",
                    "sample_index")


@dataclass
class Task:
    """One program to compile. ``labeled`` holds demos in the predictor's own fields, for LabeledFewShot."""

    name: str
    student: dspy.Module
    trainset: list[dspy.Example]
    devset: list[dspy.Example]
    labeled: list[dspy.Example]
    metric: Callable
    dev_mode: str
    metric_name: str


def without_text(card: ClassCard, text: str) -> ClassCard:
    """The card with ``text`` removed from its examples (the same card when it is not one of them)."""
    if text not in card.examples:
        return card
    return card.model_copy(update={"examples": [e for e in card.examples if e != text]})


def _demo_texts(demo: Any) -> Iterable[str]:
    """Every text a relabeler demo shows: its own texts and the examples of the cards it carries."""
    yield str(demo.get("text", ""))
    yield from (str(t) for t in demo.get("texts") or [])
    for card in demo.get("candidate_classes") or []:
        yield from (card.examples if isinstance(card, ClassCard) else card.get("examples", []))


class HoldOutRelabeler(Relabeler):
    """A Relabeler that never sees the texts it classifies: not in a class card, not in a demo or the worked
    example, and not in the class centroids that pick the candidates. For texts that are not seeds it behaves
    like Relabeler, and its saved state is a Relabeler's (one predictor, ``relabel``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._selectors: dict[str, CandidateSelector] = {}

    def _candidates(self, batch: list[str]) -> list[str]:
        wanted = {name for text in batch for name in self._selector_for(text)(text)}
        return [label for label in self.selector.labels if label in wanted]

    def _cards(self, names: list[str], batch: list[str]) -> list[ClassCard]:
        cards = super()._cards(names, batch)
        for text in batch:
            cards = [without_text(card, text) for card in cards]
        return cards

    def _demos(self, cards: list[ClassCard], batch: list[str]) -> list:
        return [d for d in super()._demos(cards, batch) if not set(batch) & set(_demo_texts(d))]

    def _one_demos(self, names: list[str], text: str) -> list:
        return [d for d in super()._one_demos(names, text) if text not in set(_demo_texts(d))]

    def _selector_for(self, text: str) -> CandidateSelector:
        if self.selector.offers_all or not any(text in c.examples for c in self.cards.values()):
            return self.selector
        if text not in self._selectors:
            seeds = {name: without_text(card, text).examples for name, card in self.cards.items()}
            self._selectors[text] = CandidateSelector(seeds, self.selector.encoder, self.selector.top_k)
        return self._selectors[text]


def relabeler_task(split: FewShotSplit, cards: list[ClassCard], selector: CandidateSelector,
                   task: str | None = None) -> Task:
    """Demos come from the seeds; the dev score from the dev split, else leave-one-out over the seeds.
    LabeledFewShot gets each seed as a demo in the one-text predictor's fields (its text, its class)."""
    seeds = [dspy.Example(text=e.text, label=e.label).with_inputs("text") for e in split.seeds]
    dev = [dspy.Example(text=e.text, label=e.label).with_inputs("text") for e in split.dev]
    labeled = [dspy.Example(text=e.text, label=e.label).with_inputs("text") for e in split.seeds]
    mode = "dev-split" if dev else "leave-one-out"
    return Task("relabeler", HoldOutRelabeler(cards, selector, task=task), seeds, dev or seeds, labeled,
                relabel_accuracy, mode, "label accuracy")


def generator_task(split: FewShotSplit, cards: list[ClassCard], judge: Relabeler, *, calls_per_class: int = 2,
                   dev_calls_per_class: int = 1, texts_per_call: int = 3, group_size: int = 4,
                   temperature: float = 1.0, task: str | None = None) -> Task:
    """Training and dev examples are mix calls; LabeledFewShot gets held-out pure calls built from the seeds."""
    by_name = {card.name: card for card in cards}
    plan = dict(texts_per_call=texts_per_call, group_size=group_size)
    train = mix_plan(split.labels, calls_per_class * texts_per_call, split.seed, **plan)
    dev = mix_plan(split.labels, texts_per_call, split.seed, start_index=DEV_CALL_START,
                   calls_per_class=dev_calls_per_class, **plan)
    metric = GeneratorMetric(judge, [e.text for e in split.seeds])
    student = BorderlineGenerator(temperature, task, [e.text for e in split.seeds], cards)
    return Task("generator", student, [_call_example(c, by_name) for c in train],
                [_call_example(c, by_name) for c in dev], _labeled_generator_demos(train, by_name), metric,
                "mix-calls", "borderline score (GeneratorMetric)")


def _call_example(call: MixCall, cards: dict[str, ClassCard]) -> dspy.Example:
    return dspy.Example(class_cards=[cards[c] for c in call.group], majority_class=call.majority,
                        minority_class=call.minority, majority_share=call.majority_share,
                        num_texts=call.num_texts, sample_index=call.sample_index).with_inputs(*GENERATOR_INPUTS)


def _labeled_generator_demos(calls: list[MixCall], cards: dict[str, ClassCard]) -> list[dspy.Example]:
    """One pure call per seed, in the predictor's fields: the class cards without that seed, and the seed as
    the one text asked for. It shows a real in-class text that the prompt does not already contain."""
    groups = {call.majority: call.group for call in calls}
    demos = []
    for name, group in groups.items():
        for seed in cards[name].examples:
            demos.append(dspy.Example(
                class_cards=[without_text(cards[c], seed) for c in group], majority_class=name,
                minority_class="none", majority_share=share_phrase(name, None, 1.0), num_texts=1, texts=[seed],
            ).with_inputs("class_cards", "majority_class", "minority_class", "majority_share", "num_texts"))
    return demos
