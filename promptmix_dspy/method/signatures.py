"""Typed DSPy signatures. Each docstring is the instruction the LM reads; field names are part of the prompt.

Inputs are ordered so that what many calls share comes first and what varies comes last: the class cards
before the texts to label, the group's cards before the mix request. The dataset's task description is put in
front of the instruction by the modules (``with_task``), so it opens the system message.
"""

from __future__ import annotations

from typing import Literal, Sequence

import dspy
from pydantic import BaseModel, Field

__all__ = [
    "ClassCard",
    "ClassifyText",
    "answer_codes",
    "classify_signature_for",
    "DescribeClass",
    "DescribeClasses",
    "DescribeTask",
    "GenerateBorderlineExamples",
    "RelabelTexts",
    "relabel_signature_for",
    "with_task",
]


class ClassCard(BaseModel):
    """What the LM is shown about one class: its name, a one-sentence description and seed examples."""

    name: str
    description: str
    examples: list[str] = Field(default_factory=list)
    code: str | None = None  # the short answer that stands for the class, when it is not its name


class DescribeClass(dspy.Signature):
    """Write a one-sentence description of a class in a text-classification dataset, from its name and a few
    example texts. Say what decides that a text belongs to this class rather than to the other classes listed:
    the property the classes tell apart, not the subject its examples happen to share."""

    class_name: str = dspy.InputField()
    other_classes: list[str] = dspy.InputField(desc="the dataset's other class names")
    examples: list[str] = dspy.InputField(desc="example texts that belong to the class")
    description: str = dspy.OutputField(desc="one sentence, no more than 40 words")


class DescribeClasses(dspy.Signature):
    """Write a one-sentence description of each numbered class of a text-classification dataset, from the example
    texts of every class. A description says what decides that a text belongs to the class rather than to the
    dataset's other classes: the property the classes tell apart, not the subject its examples happen to share."""

    all_classes: list[str] = dspy.InputField(desc="every class of the dataset")
    class_examples: list[str] = dspy.InputField(desc="'class name: example text' lines")
    classes: list[str] = dspy.InputField(desc="the classes to describe, numbered")
    descriptions_for_classes: dict[str, str] = dspy.OutputField(desc="one sentence, no more than 40 words")


class DescribeTask(dspy.Signature):
    """Say in one sentence what the texts of a text-classification dataset are (what kind of text, as far as the
    examples show) and what property of a text its class stands for, from the class names and a few example texts
    of each class."""

    class_examples: list[str] = dspy.InputField(desc="'class name: example text' lines")
    task: str = dspy.OutputField(desc="one sentence")


class GenerateBorderlineExamples(dspy.Signature):
    """Write new texts for a text-classification dataset. Each text must belong majority_share of the way to
    the majority class and the rest of the way to the minority class, so that it sits near the boundary between
    the two classes while still mostly reading as the majority class. Use the class cards to understand every
    class of the group. Match the style and length of the example texts, but never copy or paraphrase an
    example: write about new topics, names and situations, and make the texts differ from each other and from
    the texts already written. Return only the texts, with no numbering, quotes, labels or percentages."""

    class_cards: list[ClassCard] = dspy.InputField(desc="the classes of this group: name, description, examples")
    majority_class: str = dspy.InputField()
    minority_class: str = dspy.InputField(desc="'none' when the texts should be purely the majority class")
    majority_share: str = dspy.InputField(desc="how much each text belongs to each class, e.g. '80% A, 20% B'")
    already_written: list[str] = dspy.InputField(desc="texts already written for this request: write others")
    num_texts: int = dspy.InputField(desc="how many texts to write")
    texts: list[str] = dspy.OutputField(desc="a new text")


class RelabelTexts(dspy.Signature):
    """Classify each numbered text into exactly one of the candidate classes. Read each class's description
    and examples, then give every text, by its number, the name of the class it belongs to most."""

    candidate_classes: list[ClassCard] = dspy.InputField(desc="the classes to choose from")
    texts: list[str] = dspy.InputField(desc="the texts to classify, numbered")
    classes_for_texts: dict[str, str] = dspy.OutputField(desc="class name")


class ClassifyText(dspy.Signature):
    """Classify the text into exactly one of its candidate classes. Read the class descriptions, then answer with
    the candidate class the text belongs to most."""

    class_cards: list[ClassCard] = dspy.InputField(desc="the classes")
    candidates: list[str] = dspy.InputField(desc="the classes this text may be given")
    text: str = dspy.InputField(desc="the text to classify")
    label: str = dspy.OutputField(desc="the class name")


CODES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def answer_codes(candidates: Sequence[str]) -> dict[str, str] | None:
    """How each candidate is answered: by its own name when the names start with distinct letters (the answer's
    first token then tells the class, whatever the tokenizer), else by a letter (None: by name). Each answer is
    then one or two tokens, and the first token's probabilities are the classes' probabilities."""
    initials = [name[:1].lower() for name in candidates]
    if all(initials) and len(set(initials)) == len(initials):
        return None
    if len(candidates) > len(CODES):
        raise ValueError(f"{len(candidates)} candidate classes share initials and there are only {len(CODES)} "
                         f"one-letter codes: lower --top-k")
    return {name: CODES[i] for i, name in enumerate(candidates)}


def classify_signature_for(candidates: list[str], codes: dict[str, str] | None = None,
                           base: type[dspy.Signature] = ClassifyText) -> type[dspy.Signature]:
    """``base`` whose answer can only be one of ``candidates`` (a Literal the adapter enforces, by grammar on
    llama.cpp). With ``codes`` the LM answers a class's code (the cards show it) and the adapter maps it back, so
    predictions and demos always hold class names."""
    if not candidates:
        raise ValueError("classifying needs at least one candidate class")
    desc = "the letter of the class" if codes else "the class name"
    return base.with_updated_fields("label", type_=Literal[tuple(candidates)], desc=desc, answer_codes=codes)


def relabel_signature_for(candidates: list[str],
                          base: type[dspy.Signature] = RelabelTexts) -> type[dspy.Signature]:
    """``base`` (RelabelTexts, or a compiled copy of it) whose answer for each text can only be one of
    ``candidates`` (a Literal, enforced by the adapter; the keys are the texts' numbers)."""
    if not candidates:
        raise ValueError("relabeling needs at least one candidate class")
    return base.with_updated_fields("classes_for_texts", type_=dict[str, Literal[tuple(candidates)]])


def with_task(signature: type[dspy.Signature], task: str | None) -> type[dspy.Signature]:
    """The signature with the dataset's task description in front of its instruction (once)."""
    task = " ".join((task or "").split())
    if not task or signature.instructions.startswith(task):
        return signature
    return signature.with_instructions(f"{task}\n\n{signature.instructions}")
