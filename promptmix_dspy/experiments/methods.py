"""The rows of the paper's table as a registry: what each method trains on, which generation it reads.

A method adds rows to the seeds (``extra_rows``), reads one of the shared ``GENERATIONS`` (a1 and a2 read the
same one: a1 keeps the labels as generated, a2 takes the LLM's), changes the shots (baseline5), or is the
teacher itself (llm). Adding a method is adding an entry to ``METHODS``.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from promptmix_dspy.data.fewshot import FewShotSplit
from promptmix_dspy.data.types import Dataset, Example


class CellSpec(Protocol):
    """What a row builder reads of the experiment's spec (experiments.spec.ExperimentSpec has it all)."""

    seed: int
    per_class: int
    eda_per_example: int | None

    @property
    def shots_used(self) -> int: ...

__all__ = ["GENERATIONS", "METHODS", "Cell", "CellSpec", "Method"]

# The generations methods can read: the paper's mixing, the no-mix ablation (majority share 1.0), the paper's
# mixing with the compiled programs of the dataset (the spec's compiled_programs), and with three times the
# texts per class (a2fb's budget: round 1, the probe pool and round 2).
GENERATIONS: dict[str, dict[str, Any]] = {"mix": {"fixed_share": None}, "nomix": {"fixed_share": 1.0},
                                          "compiled": {"fixed_share": None, "compiled": True},
                                          "mix3": {"fixed_share": None, "per_class_factor": 3}}


@dataclass
class Cell:
    """What a method's row builder sees: the spec, the dataset, its few-shot split, the generation if any."""

    spec: CellSpec
    dataset: Dataset
    split: FewShotSplit
    generated: list[dict] = field(default_factory=list)
    second_round: list[dict] = field(default_factory=list)  # a2fb: the probe pool and round 2, relabeled


def _no_rows(cell: Cell) -> list[Example]:
    return []


def _generated(label_field: str) -> Callable[[Cell], list[Example]]:
    def rows(cell: Cell) -> list[Example]:
        return [Example(r["text"], r[label_field]) for r in cell.generated]
    return rows


def _with_second_round(cell: Cell) -> list[Example]:
    return [Example(r["text"], r["label"]) for r in cell.generated + cell.second_round]


def _eda_rows(cell: Cell) -> list[Example]:
    from promptmix_dspy.experiments.eda import EDAConfig, augment_examples

    per_example = cell.spec.eda_per_example or max(1, cell.spec.per_class // cell.spec.shots_used)
    rng = random.Random(f"{cell.spec.seed}:eda")
    return augment_examples(cell.split.seeds, EDAConfig(per_example=per_example), _synonyms(), rng)


@functools.lru_cache(maxsize=1)
def _synonyms() -> Any:
    """One synonym source per process: every EDA cell of a grid shares the loaded embeddings."""
    from promptmix_dspy.experiments.eda import EmbeddingSynonyms

    return EmbeddingSynonyms()


@dataclass(frozen=True)
class Method:
    """A row of the paper's table: which generation it reads, which rows it adds to the seeds, or the teacher."""

    summary: str
    extra_rows: Callable[[Cell], list[Example]] = _no_rows
    generation: str | None = None
    shots: int | None = None
    teacher: bool = False
    generation_stages: tuple[str, ...] = ("describe", "generate", "relabel")
    rounds: int = 1  # 2: a second round aimed at the round-1 student's confusions (experiments/feedback.py)


METHODS: dict[str, Method] = {
    "baseline": Method("student on the seeds only"),
    "a1": Method("seeds + generated texts, labels as generated (no relabeling)", _generated("generated_for"),
                 "mix", generation_stages=("describe", "generate")),
    "a2": Method("seeds + generated texts relabeled by the LLM (PromptMix)", _generated("label"), "mix"),
    "llm": Method("the relabeler itself classifying the test set (the teacher, NN+LLM)", teacher=True),
    "eda": Method("seeds + easy data augmentation of the seeds", _eda_rows),
    "nomix": Method("PromptMix without mixing: majority share 1.0, relabeled", _generated("label"), "nomix"),
    "baseline5": Method("student on 5 seeds per class", shots=5),
    "a2c": Method("PromptMix with the dataset's compiled programs (programs/<dataset>)", _generated("label"),
                  "compiled"),
    "a2x": Method("PromptMix with three times the texts per class (a2fb's LLM budget)", _generated("label"),
                  "mix3"),
    "a2fb": Method("PromptMix, then a second round aimed at the round-1 student's confusions",
                   _with_second_round, "mix", rounds=2),
}
