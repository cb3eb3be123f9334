"""What to compile and how (``CompileConfig``, validated on creation), and what came out (``CompileResult``,
whose ``record`` is the program's entry in meta.json)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import dspy

from promptmix_dspy.compile.optimizers import get_optimizer
from promptmix_dspy.method.programs import PROGRAMS

__all__ = ["CompileConfig", "CompileResult"]

_SECRET_HINTS = ("key", "token", "secret", "password")


@dataclass
class CompileConfig:
    """What to compile and how. ``dev_per_class=0`` scores the relabeler leave-one-out over the seeds.

    ``compact_demos`` drops the class cards from every demo: the prompt shows the cards already, and a demo
    that repeats them costs hundreds of tokens (more than a small local model's context holds with 4 demos).
    A compiled program that scores lower on dev than the uncompiled one is not kept unless ``keep_worse``.
    """

    program: str = "all"
    optimizer: str = "bootstrap"
    settings: dict[str, Any] = field(default_factory=dict)
    shots: int = 2
    seed: int = 0
    dev_per_class: int = 0
    top_k: int = 5
    encoder: str | None = None
    generator_calls: int = 2
    generator_dev_calls: int = 1
    texts_per_call: int = 3
    group_size: int = 4
    num_threads: int = 4
    compact_demos: bool = True
    keep_worse: bool = False
    max_cost: float | None = None

    def __post_init__(self) -> None:
        if self.program not in (*PROGRAMS, "all"):
            raise ValueError(f"program must be one of {[*PROGRAMS, 'all']}, got {self.program!r}")
        for name in self.optimizers:
            get_optimizer(name)
        unknown = [k for k in self.settings if not any(k in _accepted(n) for n in self.optimizers)]
        if unknown:
            raise ValueError(f"optimizer setting(s) {unknown} are taken by none of {list(self.optimizers)}; "
                             f"accepted: {sorted(set().union(*(_accepted(n) for n in self.optimizers)))}")
        if self.max_cost is not None and self.max_cost <= 0:
            raise ValueError(f"max_cost must be > 0 (USD), got {self.max_cost}")
        for name in ("shots", "top_k", "generator_calls", "generator_dev_calls", "texts_per_call", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dev_per_class < 0:
            raise ValueError(f"dev_per_class must be >= 0, got {self.dev_per_class}")

    @property
    def programs(self) -> tuple[str, ...]:
        return PROGRAMS if self.program == "all" else (self.program,)

    @property
    def optimizers(self) -> tuple[str, ...]:
        """``optimizer`` may name several, comma-separated: each is tried, the best on dev is kept."""
        names = tuple(n.strip() for n in self.optimizer.split(",") if n.strip())
        if not names:
            raise ValueError("give at least one optimizer")
        return names

    def settings_for(self, optimizer: str) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k in _accepted(optimizer)}


def _accepted(optimizer: str) -> set[str]:
    init, comp = get_optimizer(optimizer).accepted()
    return init | comp


@dataclass
class CompileResult:
    name: str
    program: dspy.Module
    optimizer: str
    settings: dict[str, Any]
    dev_mode: str
    dev_size: int
    metric: str
    dev_before: float
    dev_after: float
    seconds: float
    compact_demos: bool = True
    judge: str | None = None  # the generator's metric: which relabeler judged its texts
    kept: str = "compiled"  # or "uncompiled": compiling lowered the dev score, so the original was kept
    tried: dict[str, float] = field(default_factory=dict)  # every optimizer tried: its dev score
    failed: dict[str, str] = field(default_factory=dict)  # optimizers whose run broke, and why

    def record(self) -> dict[str, Any]:
        """What meta.json says about this program (no module, no secrets)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("program", "settings")}
        out = {k: v for k, v in out.items() if v is not None}
        out["demos"] = {name: len(p.demos) for name, p in self.program.named_predictors()}
        return {**out, "file": f"{self.name}.json", "settings": _public(self.settings)}


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings safe to write: no objects, nothing that looks like a credential."""
    out = {}
    for key, value in settings.items():
        if any(hint in key.lower() for hint in _SECRET_HINTS):
            out[key] = "<not saved>"
        elif isinstance(value, (str, int, float, bool, type(None), list, dict)):
            out[key] = value
        else:
            out[key] = repr(type(value).__name__)
    return out

