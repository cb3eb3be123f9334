"""What an experiment runs: ``ExperimentSpec``, read from TOML specs (evals/*.toml) with command-line overrides.

The fingerprint of a spec holds only the settings that shape its method's result (a baseline cell ignores the
LLM settings, the teacher ignores the student), so a run folder can refuse other settings without refusing
harmless ones.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from promptmix_dspy.experiments.methods import DEV_PER_CLASS, GENERATIONS, METHODS
from promptmix_dspy.llm.models import LOCAL_MODEL_ENV
from promptmix_dspy.llm.settings import LMSettings
from promptmix_dspy.method.programs import programs_identity
from promptmix_dspy.method.protocol import PROTOCOL_VERSION
from promptmix_dspy.pipeline.config import AugmentConfig

__all__ = ["ExperimentSpec", "dataset_key", "load_spec", "load_spec_data", "merge_overrides"]

_AUGMENT = AugmentConfig()  # the generation defaults live in AugmentConfig; a spec starts from them
# Settings that do not change results (how fast, how much may be spent): they may differ when a run is resumed.
_NOT_FINGERPRINTED = {"threads", "data_dir", "max_cost", "max_errors", "spec_dir"}
_LM_IDENTITY = ("model", "local_model", "api_base", "adapter", "max_tokens")  # what makes the answers


@dataclass
class ExperimentSpec:
    """What one experiment runs. Defaults follow DESIGN.md; ``student`` overrides TrainConfig fields, ``lm``
    holds LMSettings fields (no ``model`` = the embedded server with ``local_model``, default
    qwen2.5-coder-1.5b). ``max_cost`` (USD) and ``max_errors`` cap what the LLM calls may spend."""

    dataset: str
    method: str = "a2"
    seed: int = _AUGMENT.seed
    shots: int = _AUGMENT.shots
    per_class: int = _AUGMENT.per_class
    texts_per_call: int = _AUGMENT.texts_per_call
    group_size: int = _AUGMENT.group_size
    top_k: int = _AUGMENT.top_k
    relabel_batch: int = _AUGMENT.relabel_batch
    reask: int = _AUGMENT.reask
    max_rounds: int = _AUGMENT.max_rounds
    attempts: int = _AUGMENT.attempts
    threads: int | None = _AUGMENT.num_threads
    eda_per_example: int | None = None  # default: per_class // shots, as many new texts as the generation adds
    teacher_test_limit: int | None = None  # the llm method on a fixed, seeded sample of the test set
    probe_per_class: int | None = None  # a2fb: the probe pool's texts per class (default per_class)
    programs: str | None = None
    # what a2c and a2c-dev relabel with: compiled on this seed's own rows ({dataset}, {seed} filled in), made on
    # first use (experiments/compiled.py); a folder compiled on other rows is refused
    compiled_programs: str = "programs/{dataset}/seed{seed}"
    compiled_dev_programs: str = "programs/{dataset}/seed{seed}-dev10"
    calibrate: str = _AUGMENT.calibrate
    layout: str | None = None
    data_dir: str | None = None
    spec_dir: str | None = None  # the spec file's folder: relative programs paths in it are relative to it
    max_cost: float | None = None
    max_errors: int | None = None
    student: dict[str, Any] = field(default_factory=dict)
    lm: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {sorted(METHODS)}")
        for name in ("shots", "per_class", "threads", "relabel_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_cost is not None and self.max_cost <= 0:
            raise ValueError(f"max_cost must be > 0 (USD), got {self.max_cost}")
        if self.max_errors is not None and self.max_errors < 0:
            raise ValueError(f"max_errors must be >= 0, got {self.max_errors}")
        if self.teacher_test_limit is not None and self.teacher_test_limit < 1:
            raise ValueError(f"teacher_test_limit must be >= 1, got {self.teacher_test_limit}")
        unknown = set(self.lm) - {f.name for f in fields(LMSettings)}
        if unknown:
            raise ValueError(f"unknown [lm] setting(s) {sorted(unknown)}")

    @property
    def shots_used(self) -> int:
        return METHODS[self.method].shots or self.shots

    @property
    def dev_per_class(self) -> int:
        """Labelled train texts per class beyond the seeds this cell may use (the -dev methods only)."""
        return DEV_PER_CLASS if METHODS[self.method].dev else 0

    def augment_config(self, generation: str = "mix") -> AugmentConfig:
        settings = {k: v for k, v in GENERATIONS[generation].items() if k != "per_class_factor"}
        factor = GENERATIONS[generation].get("per_class_factor", 1)
        # shots=self.shots: a generation is shared by every method that reads it (the -dev ones too): 2 shots
        return AugmentConfig(shots=self.shots, seed=self.seed, per_class=factor * self.per_class,
                             texts_per_call=self.texts_per_call, group_size=self.group_size, top_k=self.top_k,
                             relabel_batch=self.relabel_batch, reask=self.reask, max_rounds=self.max_rounds,
                             attempts=self.attempts, num_threads=self.threads, max_cost=self.max_cost,
                             max_errors=self.max_errors, probe_per_class=self.probe_per_class,
                             calibrate=self.calibrate, layout=self.layout, **settings)

    def train_config(self):
        from promptmix_dspy.student.train import TrainConfig

        return TrainConfig.for_dataset(self.dataset, **{"seed": self.seed, **dict(METHODS[self.method].student),
                                                        **self.student})

    @property
    def programs_dir(self) -> str | None:
        """Compiled programs the generation uses (``programs``); ``{dataset}`` and ``{seed}`` are filled in."""
        return self._fill(self.programs)

    @property
    def relabel_programs_dir(self) -> str | None:
        """The compiled relabeler a2c / a2c-dev relabel with (``compiled_programs`` / ``compiled_dev_programs``)."""
        which = METHODS[self.method].relabel_with
        return self._fill(getattr(self, which)) if which else None

    def _fill(self, template: str | None) -> str | None:
        """The template with {dataset} and {seed} filled in, relative paths taken from the spec file's folder."""
        if not template:
            return None
        path = template.replace("{dataset}", dataset_key(self.dataset)).replace("{seed}", str(self.seed))
        if self.spec_dir and not Path(path).is_absolute():
            return os.path.normpath(os.path.join(self.spec_dir, path))
        return path

    def lm_settings(self) -> LMSettings:
        return LMSettings(**self.lm)

    def budget(self, spent_elsewhere: float = 0.0):
        """A Budget with this spec's limits (``spent_elsewhere``: what other cells of the grid already spent)."""
        from promptmix_dspy.llm.runner import Budget

        return Budget(self.max_errors, self.max_cost, spent_before=spent_elsewhere)

    def lm_identity(self) -> dict:
        """What makes the LLM's answers: the model (the embedded one by name), endpoint, adapter, max_tokens."""
        settings = self.lm_settings()
        out = {k: getattr(settings, k) for k in _LM_IDENTITY if getattr(settings, k) is not None}
        if settings.embedded:
            from promptmix_dspy.llm.models import DEFAULT_LOCAL_MODEL

            out["local_model"] = settings.local_model or os.environ.get(LOCAL_MODEL_ENV) or DEFAULT_LOCAL_MODEL
            out.pop("api_base", None)
        return out

    def fingerprint(self) -> dict:
        """Everything that shapes this method's result, and nothing else (a baseline cell ignores the LLM): the
        protocol version, the settings the method reads, the student's resolved settings (a changed default is
        another cell), and the programs by content."""
        out = {k: v for k, v in asdict(self).items() if k not in _NOT_FINGERPRINTED | _unused_by(self.method)}
        out["protocol"] = PROTOCOL_VERSION
        if out.get("probe_per_class", 0) is None:  # a2fb's probe size is part of the cell only when set
            del out["probe_per_class"]
        if "lm" in out:
            out["lm"] = self.lm_identity()
        if "programs" in out:
            out["programs"] = programs_identity(self.programs_dir)
        if "student" in out:
            out["student"] = asdict(self.train_config())
        return out  # compiled_programs stays the template as written: the programs' content is in each row


def _unused_by(method_name: str) -> set[str]:
    method = METHODS[method_name]
    unused = set() if method.generation else {"texts_per_call", "group_size", "max_rounds", "reask"}
    if not (method.generation or method.teacher):
        unused |= {"top_k", "attempts", "programs", "lm", "relabel_batch"}
    if method.generation and "relabel" not in method.generation_stages:
        unused |= {"relabel_batch", "calibrate", "layout"}
    if not (method.generation or method.teacher):
        unused |= {"calibrate", "layout"}
    unused |= set() if method.teacher else {"teacher_test_limit"}
    unused |= set() if method.rounds == 2 else {"probe_per_class"}
    unused |= {k for k in ("compiled_programs", "compiled_dev_programs") if method.relabel_with != k}
    unused |= {"student"} if method.teacher else set()
    return unused | (set() if method_name == "eda" else {"eda_per_example"})


def dataset_key(dataset: str) -> str:
    """A folder-safe short name: a built-in name as is, a file or folder by its name without suffix."""
    return re.sub(r"[^\w.-]+", "_", Path(dataset).stem) if ("/" in dataset or "\\" in dataset) else dataset


def load_spec_data(path: str | Path) -> dict[str, Any]:
    """The raw tables of a TOML spec file."""
    import tomllib

    with open(path, "rb") as fh:
        return tomllib.load(fh)


def load_spec(path: str | Path, **overrides: Any) -> ExperimentSpec:
    """An ExperimentSpec from a TOML file (top-level keys, [student] and [lm] tables); None overrides ignored."""
    data = {**load_spec_data(path), "spec_dir": str(Path(path).resolve().parent)}
    data.pop("grid", None)
    known = {f.name for f in fields(ExperimentSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    return ExperimentSpec(**merge_overrides(data, overrides))


def merge_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Spec values with overrides applied: None leaves a value alone, tables ([student], [lm]) are merged."""
    out = dict(data)
    for key, value in overrides.items():
        if isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        elif value is not None:
            out[key] = value
    return out
