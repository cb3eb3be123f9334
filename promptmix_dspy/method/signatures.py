"""Typed DSPy signatures. Each docstring is the instruction the LM reads; field names are part of the prompt.

Inputs are ordered so that what many calls share comes first and what varies comes last: the class cards
before the texts to label, the group's cards before the mix request. The dataset's task description is put in
front of the instruction by the modules (``with_task``), so it opens the system message.
"""

from __future__ import annotations

from typing import Literal

import dspy
from pydantic import BaseModel, Field

__all__ = [
    "ClassCard",
    "DescribeClass",
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


class DescribeClass(dspy.Signature):
    """Write a one-sentence description of a class in a text-classification dataset, from its name and a few
    example texts. Say what the texts of this class are about, precisely enough to tell it apart from the
    other classes listed."""

    class_name: str = dspy.InputField()
    other_classes: list[str] = dspy.InputField(desc="the dataset's other class names")
    examples: list[str] = dspy.InputField(desc="example texts that belong to the class")
    description: str = dspy.OutputField(desc="one sentence, no more than 40 words")


class DescribeTask(dspy.Signature):
    """Say in one sentence what the texts of a text-classification dataset are and what their classes tell
    apart, from the class names and a few example texts of each class."""

    class_examples: list[str] = dspy.InputField(desc="'class name: example text' lines")
    task: str = dspy.OutputField(desc="one sentence, e.g. 'The texts are questions, classified by the type of "
                                      "answer they expect.'")


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
