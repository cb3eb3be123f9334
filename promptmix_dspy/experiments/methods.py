"""The rows of the paper's table as a registry: what each method trains on, which generation it reads.

A method adds rows to the seeds (``extra_rows``), reads one of the shared ``GENERATIONS`` (a1, a2 and a2p read the
same one: a1 keeps the labels as generated, a2 the LLM's answers, a2p its calibrated probabilities as soft
targets), relabels a generation's texts again with compiled programs (a2c, a2c-dev: the same texts as a2),
changes the shots (baseline5), adds labelled dev texts (baseline-dev, a2-dev), or is the teacher itself (llm,
llm-cal). Adding a method is adding an entry to ``METHODS``.
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

__all__ = ["DEV_PER_CLASS", "GENERATIONS", "METHODS", "Cell", "CellSpec", "Method"]

# The generations methods can read: the paper's mixing, the no-mix ablation (majority share 1.0), and the paper's
# mixing with three (a2fb's budget) or ten times the texts per class (the paper's upper setting, 100 per class).
GENERATIONS: dict[str, dict[str, Any]] = {"mix": {"fixed_share": None}, "nomix": {"fixed_share": 1.0},
                                          "mix3": {"fixed_share": None, "per_class_factor": 3},
                                          "mix10": {"fixed_share": None, "per_class_factor": 10}}
DEV_PER_CLASS = 10  # labelled train texts per class beyond the seeds that the -dev rows may use


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


def _probs(row: dict, key: str) -> tuple[tuple[str, float], ...] | None:
    probs = row.get(key)
    return tuple(probs.items()) if probs else None


def _generated(label_field: str, probs_field: str | None = None) -> Callable[[Cell], list[Example]]:
    """The generation's rows with the label in ``label_field`` (falling back to ``label`` for rows written before
    there was a raw answer), and the probabilities in ``probs_field`` where asked and present."""
    def rows(cell: Cell) -> list[Example]:
        return [Example(r["text"], r[label_field] if label_field in r else r["label"],
                        _probs(r, probs_field) if probs_field else None) for r in cell.generated]
    return rows


def _with_dev(rows: Callable[[Cell], list[Example]]) -> Callable[[Cell], list[Example]]:
    def more(cell: Cell) -> list[Example]:
        return rows(cell) + list(cell.split.dev)
    return more


def _with_second_round(cell: Cell) -> list[Example]:
    return [Example(r["text"], r.get("label_raw", r["label"])) for r in cell.generated + cell.second_round]


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
    """A row of the table: which generation it reads, which rows it adds to the seeds, or the teacher.

    ``relabel_with``: a programs folder template (the spec's ``compiled_programs`` or ``compiled_dev_programs``)
    whose compiled relabeler labels the generation's texts again, in the cell's own folder. ``dev``: the cell may
    use DEV_PER_CLASS labelled train texts per class beyond the seeds (more labels than 2-shot; said in the table).
    ``student``: TrainConfig fields this method sets (a2p's soft targets). ``calibrated``: the teacher's row is
    its calibrated argmax."""

    summary: str
    extra_rows: Callable[[Cell], list[Example]] = _no_rows
    generation: str | None = None
    shots: int | None = None
    teacher: bool = False
    generation_stages: tuple[str, ...] = ("describe", "generate", "relabel")
    rounds: int = 1  # 2: a second round aimed at the round-1 student's confusions (experiments/feedback.py)
    relabel_with: str | None = None
    dev: bool = False
    student: tuple[tuple[str, Any], ...] = ()
    calibrated: bool = False


METHODS: dict[str, Method] = {
    "baseline": Method("student on the seeds only"),
    "a1": Method("seeds + generated texts, labels as generated (no relabeling)", _generated("generated_for"),
                 "mix", generation_stages=("describe", "generate")),
    "a2": Method("seeds + generated texts relabeled by the LLM, its answers as hard labels (PromptMix)",
                 _generated("label_raw"), "mix"),
    "a2p": Method("a2's texts with the LLM's calibrated class probabilities as soft targets",
                  _generated("label", "probs"), "mix", student=(("targets", "soft"),)),
    "llm": Method("the relabeler itself classifying the test set (the teacher, NN+LLM), its answers",
                  teacher=True),
    "llm-cal": Method("the teacher's calibrated argmax (prior from the generated texts' probabilities)",
                      generation="mix", teacher=True, calibrated=True),
    "eda": Method("seeds + easy data augmentation of the seeds", _eda_rows),
    "nomix": Method("PromptMix without mixing: majority share 1.0, relabeled", _generated("label_raw"), "nomix"),
    "baseline5": Method("student on 5 seeds per class", shots=5),
    "a2c": Method("a2's texts relabeled by the relabeler compiled on this seed's seeds (leave-one-out)",
                  _generated("label_raw"), "mix", relabel_with="compiled_programs"),
    "a2c-dev": Method("a2's texts relabeled by the relabeler compiled against 10 more labelled texts per class",
                      _generated("label_raw"), "mix", relabel_with="compiled_dev_programs", dev=True),
    "baseline-dev": Method("student on the seeds + 10 more labelled texts per class", _with_dev(_no_rows), dev=True),
    "a2-dev": Method("a2's rows + 10 more labelled texts per class as training data", _with_dev(_generated("label_raw")),
                     "mix", dev=True),
    "a2x": Method("PromptMix with three times the texts per class (30)", _generated("label_raw"), "mix3"),
    "a2x10": Method("PromptMix with ten times the texts per class (100, the paper's upper setting)",
                    _generated("label_raw"), "mix10"),
    "a2fb": Method("PromptMix, then a second round aimed at the round-1 student's confusions",
                   _with_second_round, "mix", rounds=2),
}
