"""The settings of an augmentation run (``AugmentConfig``), validated on creation.

The method's defaults follow the authors' released code (DESIGN.md): 2 shots, groups of 4 classes, 3 texts per
generation call, the 5 nearest classes offered to the relabeler, 10 kept per class. Ours: ``relabel_batch``
texts are labelled in one call (default 1, the paper's protocol, and the one whose answer carries class
probabilities; several texts per call cost fewer tokens and, on the 1.5B default model, labelled worse in the
first table's measurements); a generation call whose texts clean-up dropped asks once more for the missing ones
(``reask``, default 1; 0 is the paper's protocol); the relabel probabilities are calibrated over the run's texts
(``calibrate``, default batch: evals/results/relabel_quality.md); generated texts found in the test split are
removed (``decontaminate``).
``FAITHFUL`` holds the paper's values of both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from promptmix_dspy.method.calibration import CALIBRATIONS
from promptmix_dspy.method.modules import LAYOUTS

__all__ = ["DEFAULT_RELABEL_BATCH", "FAITHFUL", "RESUMABLE", "AugmentConfig"]

# Settings that do not change what a run produces: they may differ when a run is resumed.
RESUMABLE = {"num_threads", "max_errors", "max_cost"}
DEFAULT_RELABEL_BATCH = 1
FAITHFUL = {"relabel_batch": 1, "reask": 0}  # the paper's protocol: one text per relabel call, no re-ask


@dataclass
class AugmentConfig:
    """Settings of an augmentation run (module docstring for where the defaults come from)."""

    shots: int = 2
    seed: int = 0
    per_class: int = 10
    texts_per_call: int = 3
    group_size: int = 4
    top_k: int = 5
    fixed_share: float | None = None
    relabel: bool = True
    relabel_batch: int = DEFAULT_RELABEL_BATCH
    reask: int = 1
    describe: str = "missing"
    task: str | None = None
    generation_temperature: float = 1.0
    relabel_temperature: float = 0.0
    max_rounds: int = 3
    attempts: int = 3
    num_threads: int | None = None  # LLM requests in flight; None: the embedded server's slots, else 16
    max_errors: int | None = None
    max_cost: float | None = None
    dev_per_class: int = 0
    encoder: str | None = None
    probe_per_class: int | None = None  # --rounds 2: the probe pool's texts per class (default: per_class)
    decontaminate: bool = True  # drop generated texts that are test texts (pipeline/decontaminate.py)
    calibrate: str = "batch"  # how relabel probabilities are calibrated over the run's texts (method/calibration.py)
    layout: str | None = None  # what precedes the text in a relabel prompt (Relabeler); None: by class count
    generation_cards: str = "group"  # the cards a mix call shows: its group's (the paper's) or "all"

    def __post_init__(self) -> None:
        for name in ("shots", "per_class", "texts_per_call", "top_k", "max_rounds", "attempts", "num_threads",
                     "relabel_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reask < 0:
            raise ValueError(f"reask must be >= 0, got {self.reask}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2, got {self.group_size}")
        if self.fixed_share is not None and not 0.5 <= self.fixed_share <= 1.0:
            raise ValueError(f"fixed_share must be in [0.5, 1.0], got {self.fixed_share}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.calibrate not in CALIBRATIONS:
            raise ValueError(f"calibrate must be one of {CALIBRATIONS}, got {self.calibrate!r}")
        if self.describe not in ("missing", "always"):
            raise ValueError(f"describe must be 'missing' or 'always', got {self.describe!r}")
        if not 0.0 <= self.generation_temperature <= 2.0 or not 0.0 <= self.relabel_temperature <= 2.0:
            raise ValueError("temperatures must be in [0, 2]")
        if self.probe_per_class is not None and self.probe_per_class < 1:
            raise ValueError(f"probe_per_class must be >= 1, got {self.probe_per_class}")
        if self.max_errors is not None and self.max_errors < 0:
            raise ValueError(f"max_errors must be >= 0, got {self.max_errors}")
        if self.max_cost is not None and self.max_cost <= 0:
            raise ValueError(f"max_cost must be > 0, got {self.max_cost}")
        if self.task is not None and not self.task.strip():
            raise ValueError("task must be a sentence describing the dataset, or None")

    def fingerprint(self) -> dict:
        """What shapes a run's output. ``probe_per_class`` shapes only the second round (RUN/round2, a grid
        cell's own folder), never round 1, which a2 and a2fb share."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE | {"probe_per_class"}}
