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
    ClassifyText,
    DescribeClass,
    DescribeClasses,
    DescribeTask,
    GenerateBorderlineExamples,
    RelabelTexts,
    answer_codes,
    classify_signature_for,
    relabel_signature_for,
    with_task,
)

__all__ = ["DEFAULT_TOP_K", "LAYOUTS", "SHARED_MAX", "default_layout", "BorderlineGenerator", "ClassDescriber", "ClassesDescriber", "DESCRIBE_CHUNK", "PromptMix", "Relabeler", "TaskDescriber",
           "seed_demo", "seed_demos", "share_phrase"]

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


DESCRIBE_CHUNK = 6  # classes described in one call: far fewer calls, each answer within a bounded length


class ClassesDescriber(dspy.Module):
    """Writes the one-sentence descriptions of several classes in one call (up to DESCRIBE_CHUNK), each seeing every
    class's examples: what tells a class apart shows only beside the others."""

    def __init__(self) -> None:
        super().__init__()
        self.describe = dspy.Predict(DescribeClasses)

    def forward(self, classes: list[str], seeds_by_label: dict[str, list[str]], attempt: int = 0) -> dspy.Prediction:
        lines = [f"{label}: {text}" for label, texts in seeds_by_label.items() for text in texts]
        config = {"max_tokens": 70 * len(classes) + 40, **(_retry_config(0.0, attempt) if attempt else {})}
        pred = self.describe(all_classes=list(seeds_by_label), class_examples=lines, classes=list(classes),
                             config=config)
        answers = pred.descriptions_for_classes or {}
        return dspy.Prediction(descriptions={label: " ".join(str(answers.get(str(i), "")).split())
                                             for i, label in enumerate(classes, start=1)})


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
                 all_seeds: Sequence[str] = (), class_cards: Sequence[ClassCard] = (), seed: int | None = None) -> None:
        super().__init__()
        self.generate = dspy.Predict(with_task(GenerateBorderlineExamples, task))
        self.temperature = temperature
        self.all_seeds = list(all_seeds)
        self.class_names = [c.name for c in class_cards]
        self.descriptions = [c.description for c in class_cards]
        self.seed = seed  # with it, each call asks the provider for a sampling seed drawn from (seed, the call)
        self.max_chars = max_text_chars(self.all_seeds)

    def forward(self, class_cards: list[ClassCard], majority_class: str, minority_class: str | None,
                majority_share: float, num_texts: int = 3, sample_index: int = 0, attempt: int = 0,
                already_written: Sequence[str] = (), seen: set[str] | None = None) -> dspy.Prediction:
        config = _retry_config(self.temperature, attempt, f"{sample_index}")
        if self.seed is not None:
            config["seed"] = call_seed(self.seed, majority_class, minority_class, majority_share, config["rollout_id"])
        seeds = self.all_seeds or [t for card in class_cards for t in card.examples]
        max_chars = self.max_chars if self.all_seeds else max_text_chars(seeds)
        signature = self.generate.signature.with_updated_fields("texts", max_chars=max_chars)
        pred = self.generate(
            class_cards=class_cards, majority_class=majority_class, minority_class=minority_class or "none",
            majority_share=share_phrase(majority_class, minority_class, majority_share),
            already_written=list(already_written), num_texts=num_texts, config=config, signature=signature,
        )
        names = self.class_names or [card.name for card in class_cards]
        descriptions = self.descriptions or [card.description for card in class_cards]
        cleaned = clean_texts(pred.texts or [], seeds=seeds, class_names=names, descriptions=descriptions,
                              seen=seen)
        return dspy.Prediction(texts=cleaned.kept, raw_texts=list(pred.texts or []), dropped=cleaned.dropped)


def call_seed(*identity: object) -> int:
    """A sampling seed for one call from the run's seed and the call's identity: a provider that takes a seed
    (llama.cpp's server, OpenAI) then samples the same text for the same call without the response cache."""
    return int(hashlib.sha256("\x1f".join(map(str, identity)).encode()).hexdigest()[:8], 16)


def max_text_chars(seeds: Sequence[str], floor: int = 80, ceiling: int = 299) -> int:
    """The longest text a generation may write: twice the longest seed, within [floor, ceiling]. Without a cap a
    small model sometimes runs several questions into one string until max_tokens cuts it off."""
    longest = max((len(s) for s in seeds), default=ceiling)
    return max(floor, min(ceiling, 2 * longest))


def _shuffled_pairs(cards: Sequence[ClassCard], exclude: set[str]) -> list[tuple[str, str]]:
    pairs = [(text, c.name) for c in cards for text in c.examples if text not in exclude]
    random.Random(hashlib.sha256("\x1f".join(t for t, _ in pairs).encode()).hexdigest()).shuffle(pairs)
    return pairs


def seed_demos(cards: Sequence[ClassCard], exclude: set[str] = frozenset()) -> list[dspy.Example]:
    """The candidates' seeds as solved examples of the one-text task, one per seed, in an order shuffled by the
    seeds themselves (``seed_demo``'s order); ``exclude`` leaves texts out (leave-one-out scoring)."""
    return [dspy.Example(text=text, label=name) for text, name in _shuffled_pairs(cards, exclude)]


def seed_demo(cards: Sequence[ClassCard], exclude: set[str] = frozenset()) -> dspy.Example | None:
    """The candidates' seeds as one solved example of the task, in an order shuffled by the seeds themselves
    (the same cards always give the same demo; no periodic pattern of classes to copy); ``exclude`` leaves texts
    out (leave-one-out scoring)."""
    pairs = _shuffled_pairs(cards, exclude)
    if not pairs:
        return None
    return dspy.Example(texts=[t for t, _ in pairs],
                        classes_for_texts={str(i): name for i, (_, name) in enumerate(pairs, start=1)})


LAYOUTS = ("shared", "cards", "candidates", "hybrid")
GENERATION_LAYOUTS = ("group", "all")
SHARED_MAX = 26  # classes up to which the shared layout shows every seed as a solved example (one letter each)


def default_layout(n_classes: int) -> str:
    """``candidates``, the paper's, whatever the number of classes: the most accurate on TREC6 and on Banking77
    by far (evals/results/relabel_quality.md: 77 classes' cards in one shared prefix lost 40 points there)."""
    return "candidates"


class Relabeler(dspy.Module):
    """Classifies texts among the classes nearest to them; every answer can only be one of those candidates.

    One text per call (the paper's protocol, the default) is ``ClassifyText``: the answer is as short as the label
    (its name, or a one-letter code where names share an initial), and the prediction carries each candidate's
    probability where the LM returns logprobs (``probs``; None otherwise). The text's top-k candidates are named
    after it, and the answer can only be one of them. What comes before the text is the ``layout``:

    - ``shared``: every class card (name and description) and every seed as a solved example, the same for every
      call of a run, so the server computes it once and each call costs the text alone (up to SHARED_MAX classes;
      codes, where needed, are fixed over all classes);
    - ``cards``: every class card with its seeds inside it, no solved examples; codes per call;
    - ``candidates`` (the default): the paper's: only the candidates' cards (with their codes) and their seeds as
      solved examples, so the prefix changes with the candidate set;
    - ``hybrid``: every class card (no seeds, one cached prefix), then the candidates' seeds as solved examples
      and the candidates named before the text.

    Several texts per call is ``RelabelTexts`` (a JSON object of numbered answers, the candidates' cards, no
    probabilities). Demos an optimizer compiled into a predictor replace the seeds' solved examples;
    ``worked_example=False`` shows the descriptions alone. ``top_k`` (default 5, the paper's) applies when no
    ``selector`` is given.
    """

    def __init__(self, class_cards: Sequence[ClassCard], selector: CandidateSelector | None = None,
                 temperature: float = 0.0, task: str | None = None, top_k: int = DEFAULT_TOP_K,
                 worked_example: bool = True, layout: str | None = None) -> None:
        super().__init__()
        self.classify = dspy.Predict(with_task(ClassifyText, task))
        self.relabel = dspy.Predict(with_task(RelabelTexts, task))
        self.cards = {card.name: card for card in class_cards}
        self.selector = selector or CandidateSelector({c.name: c.examples for c in class_cards}, top_k=top_k)
        self.temperature = temperature
        self.worked_example = worked_example
        self.layout = layout or default_layout(len(self.cards))
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.layout == "shared" and len(self.cards) > SHARED_MAX:
            raise ValueError(f"the shared layout takes at most {SHARED_MAX} classes, got {len(self.cards)}: use "
                             f"'cards' or 'candidates'")

    @property
    def labels(self) -> list[str]:
        return list(self.cards)

    def forward(self, texts: Sequence[str] | None = None, text: str | None = None, attempt: int = 0,
                candidates: Sequence[str] | None = None) -> dspy.Prediction:
        """Label ``texts`` (or one ``text``: the prediction then has ``label``). ``attempt`` > 0 retries an
        answer that did not parse as a fresh, slightly warmer sample. A text the answer left out gets None.
        ``probs`` holds each text's {class: probability} over its candidates, or None."""
        batch = [text] if text is not None else list(texts or [])
        if not batch:
            raise ValueError("nothing to relabel")
        names = list(candidates) if candidates else self._candidates(batch)
        classes, probs = self._one(batch[0], names, attempt) if len(batch) == 1 else self._many(batch, names, attempt)
        if text is not None and classes[0] is None:
            raise ValueError("the answer gave the text no class")
        out = dspy.Prediction(classes=classes, candidates=names, probs=probs)
        if text is not None:
            out.label = classes[0]
        return out

    def _one(self, text: str, names: list[str], attempt: int) -> tuple[list, list]:
        signature, demos, inputs = self.request(text, names)
        pred = self.classify(**inputs, demos=demos, config=_retry_config(self.temperature, attempt),
                             signature=signature)
        return [pred.label], [pred.get("probs")]

    def request(self, text: str, names: list[str] | None = None) -> tuple[type[dspy.Signature], list, dict]:
        """(signature, demos, inputs) of the one-text call for ``text``: what the LM is sent (the dry run formats
        it to count tokens). In the candidates layout the cards are the candidates (with their codes, where
        needed), so no separate list of them is sent."""
        names = names or self._candidates([text])
        codes = self._codes(names)
        listed = None if self.layout == "candidates" else [f"{codes[n]}. {n}" if codes else n for n in names]
        inputs = {"class_cards": self._prefix_cards(names, text, codes), "text": text, "candidates": listed}
        return (classify_signature_for(names, codes, self.classify.signature), self._one_demos(names, text),
                inputs)

    def _codes(self, names: list[str]) -> dict[str, str] | None:
        """Answer codes (None: classes are answered by name): fixed over every class in the shared layout, where
        every seed is a solved example, else over this call's candidates."""
        return answer_codes(self.labels if self.layout == "shared" else names)

    def _prefix_cards(self, names: list[str], text: str, codes: dict[str, str] | None) -> list[ClassCard]:
        if self.layout in ("cards", "hybrid"):
            keep = self.layout == "cards"
            return [self._card(c, keep_examples=keep, text=text) for c in self.cards.values()]
        if self.layout == "shared":
            return [self._card(c, keep_examples=False, text=text) for c in self.cards.values()]
        return [self._card(self.cards[n], keep_examples=False, text=text, code=codes[n] if codes else None)
                for n in names]

    def _card(self, card: ClassCard, keep_examples: bool, text: str, code: str | None = None) -> ClassCard:
        examples = [e for e in card.examples if e != text] if keep_examples else []
        return card.model_copy(update={"examples": examples, "code": code})

    def _one_demos(self, names: list[str], text: str) -> list:
        """Compiled demos, else the seeds as solved examples (the text and its class, answered as the call is):
        every class's (shared) or the candidates' (candidates, hybrid); none in the cards layout."""
        if self.classify.demos:
            return list(self.classify.demos)
        if not self.worked_example or self.layout == "cards":
            return []
        shown = self.labels if self.layout == "shared" else names
        return seed_demos(self._cards(shown, [text]), exclude={text})

    def _many(self, batch: list[str], names: list[str], attempt: int) -> tuple[list, list]:
        cards = self._cards(names, batch)
        pred = self.relabel(candidate_classes=[c.model_copy(update={"examples": []}) for c in cards], texts=batch,
                            demos=self._demos(cards, batch), config=_retry_config(self.temperature, attempt),
                            signature=relabel_signature_for(names, self.relabel.signature))
        answers = pred.classes_for_texts or {}
        return [answers.get(str(i)) for i in range(1, len(batch) + 1)], [None] * len(batch)

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
                 task: str | None = None, layout: str | None = None, seed: int | None = None,
                 generation_layout: str = "group") -> None:
        super().__init__()
        if generation_layout not in GENERATION_LAYOUTS:
            raise ValueError(f"generation_layout must be one of {GENERATION_LAYOUTS}, got {generation_layout!r}")
        self.generation_layout = generation_layout
        self.cards = {card.name: card for card in class_cards}
        self.task = task
        seeds = [t for card in class_cards for t in card.examples]
        self.generator = BorderlineGenerator(generation_temperature, task, seeds, class_cards, seed)
        self.relabeler = Relabeler(class_cards, selector, relabel_temperature, task, layout=layout)

    def generation_cards(self, group: Sequence[str]) -> list[ClassCard]:
        """The cards a mix call shows: every class's (``generation_cards="all"``: one prompt prefix for every call
        of the run, computed once by the server), or the group's (the paper's)."""
        if self.generation_layout == "all":
            return list(self.cards.values())
        return [self.cards[c] for c in group]

    def forward(self, majority_class: str, minority_class: str | None, majority_share: float,
                group: Sequence[str], num_texts: int = 3, sample_index: int = 0) -> dspy.Prediction:
        generated = self.generator(class_cards=self.generation_cards(group), majority_class=majority_class,
                                   minority_class=minority_class, majority_share=majority_share,
                                   num_texts=num_texts, sample_index=sample_index)
        labels = self.relabeler(texts=generated.texts).classes if generated.texts else []
        rows = [{"text": t, "generated_for": majority_class, "label": label}
                for t, label in zip(generated.texts, labels)]
        return dspy.Prediction(rows=rows, dropped=generated.dropped)
