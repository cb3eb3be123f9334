"""Typed DSPy signatures. Each docstring is the instruction the LM reads; field names are part of the prompt."""

from __future__ import annotations

from typing import Literal

import dspy
from pydantic import BaseModel, Field

__all__ = [
    "ClassCard",
    "DescribeClass",
    "GenerateBorderlineExamples",
    "RelabelText",
    "relabel_signature_for",
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
    examples: list[str] = dspy.InputField(desc="example texts that belong to the class")
    other_classes: list[str] = dspy.InputField(desc="the dataset's other class names")
    description: str = dspy.OutputField(desc="one sentence, no more than 40 words")


class GenerateBorderlineExamples(dspy.Signature):
    """Generate a diverse set of short texts for a text-classification dataset. Each text must belong
    majority_share of the way to the majority class and the rest of the way to the minority class, so that it
    sits near the boundary between the two classes while still mostly reading as the majority class. Use the
    class cards to understand every class of the group. Match the style and length of the example texts, make
    the texts differ from each other, and never copy an example. Return only the texts, with no numbering,
    quotes, labels or percentages."""

    class_cards: list[ClassCard] = dspy.InputField(desc="the classes of this group: name, description, examples")
    majority_class: str = dspy.InputField()
    minority_class: str = dspy.InputField(desc="'none' when the texts should be purely the majority class")
    majority_share: str = dspy.InputField(desc="how much each text belongs to each class, e.g. '80% A, 20% B'")
    num_texts: int = dspy.InputField(desc="how many texts to write")
    texts: list[str] = dspy.OutputField(desc="the generated texts, one string each")


class RelabelText(dspy.Signature):
    """Classify the text into exactly one of the candidate classes. Read each class's description and
    examples, then answer with the name of the class the text belongs to most."""

    text: str = dspy.InputField()
    candidate_classes: list[ClassCard] = dspy.InputField(desc="the classes to choose from")
    label: str = dspy.OutputField(desc="the name of one candidate class, exactly as written")


def relabel_signature_for(candidates: list[str],
                          base: type[dspy.Signature] = RelabelText) -> type[dspy.Signature]:
    """``base`` (RelabelText, or a compiled copy of it with optimized instructions) whose ``label`` can only be
    one of ``candidates`` (a Literal, enforced by the adapter)."""
    if not candidates:
        raise ValueError("relabeling needs at least one candidate class")
    return base.with_updated_fields("label", type_=Literal[tuple(candidates)])
