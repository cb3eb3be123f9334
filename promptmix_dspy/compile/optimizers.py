"""The registry of DSPy optimizers ``promptmix compile`` can use, and how user settings reach them.

Each entry names a DSPy teleprompter class, the defaults we give it, and which data its ``compile`` takes.
Settings pass through: a key is sent to the class's constructor or to its ``compile``, whichever accepts it,
and an unknown key is an error that lists the accepted ones.

    spec = get_optimizer("mipro")
    compiled = spec.run(student, metric, trainset=..., valset=..., labeled=..., settings={"auto": "medium"})
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import dspy

__all__ = ["OPTIMIZERS", "OptimizerSpec", "get_optimizer", "parse_settings"]

DataDefaults = Callable[[dict, int], dict]  # (settings, valset size) -> defaults that depend on the data


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer: its class, our defaults, and how it is fed.

    ``labeled_only``: it copies labeled examples into demos and needs no metric (LabeledFewShot).
    ``budget_keys``: mutually exclusive budget settings; when the user sets any of them, our budget default is
    dropped and the others are sent as None.
    """

    cls: type
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    labeled_only: bool = False
    needs_reflection_lm: bool = False
    budget_keys: tuple[str, ...] = ()
    data_defaults: DataDefaults | None = None

    def accepted(self) -> tuple[set[str], set[str]]:
        """Setting names the constructor and ``compile`` accept (data and programs are ours to pass)."""
        init = set(inspect.signature(self.cls.__init__).parameters) - {"self", "metric", "args", "kwargs"}
        comp = set(inspect.signature(self.cls.compile).parameters) - {"self", "student", "teacher", "trainset",
                                                                      "valset", "args", "kwargs"}
        return init, comp

    def resolve(self, settings: dict[str, Any], valset_size: int, num_threads: int | None = None,
                seed: int | None = None) -> dict:
        """Our defaults (with the run's threads and seed where taken), overridden by the user's settings.

        Raises ValueError on a key neither the constructor nor ``compile`` accepts."""
        init, comp = self.accepted()
        unknown = sorted(set(settings) - init - comp)
        if unknown:
            raise ValueError(f"{self.cls.__name__} does not take {unknown}; it accepts {sorted(init | comp)}")
        merged = dict(self.defaults)
        if any(key in settings for key in self.budget_keys):
            merged.update(dict.fromkeys((k for k in self.budget_keys if k in init | comp), None))
        if self.data_defaults:
            merged.update(self.data_defaults(settings, valset_size))
        run_wide = {"num_threads": num_threads, "seed": seed}
        merged.update({k: v for k, v in run_wide.items() if v is not None and k in init})
        return {**merged, **settings}

    def run(self, student: dspy.Module, metric: Callable, *, trainset: list, valset: list, labeled: list,
            settings: dict[str, Any], num_threads: int | None = None, seed: int | None = None,
            reflection_lm: Any = None) -> dspy.Module:
        """Build the optimizer with the resolved settings and compile ``student``."""
        resolved = self.resolve(settings, len(valset), num_threads, seed)
        init, comp = self.accepted()
        optimizer = self.cls(**self._init_kwargs({k: v for k, v in resolved.items() if k in init}, metric,
                                                 reflection_lm))
        data = {"trainset": labeled if self.labeled_only else trainset}
        if "valset" in inspect.signature(self.cls.compile).parameters:
            data["valset"] = valset
        return optimizer.compile(student, **data, **{k: v for k, v in resolved.items() if k in comp})

    def _init_kwargs(self, kwargs: dict[str, Any], metric: Callable, reflection_lm: Any) -> dict[str, Any]:
        if not self.labeled_only:
            kwargs["metric"] = metric
        if self.needs_reflection_lm:
            if reflection_lm is None:
                raise ValueError(f"{self.cls.__name__} needs a reflection LM (--reflection-lm MODEL): a strong "
                                 f"model that reads the metric's feedback and rewrites the instructions")
            kwargs["reflection_lm"] = reflection_lm
        return kwargs


def _mipro_sizes(settings: dict, valset_size: int) -> dict:
    # MIPROv2 refuses a minibatch larger than the valset (35 by default); few-shot dev sets are small.
    return {"minibatch_size": min(35, max(1, valset_size))}


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "labeled": OptimizerSpec(dspy.LabeledFewShot, "demos copied from the labeled examples; no LM calls",
                             {"k": 4}, labeled_only=True),
    "bootstrap": OptimizerSpec(dspy.BootstrapFewShot, "demos from the program's own runs that pass the metric",
                               {"max_bootstrapped_demos": 4, "max_labeled_demos": 4, "metric_threshold": 0.5}),
    "random-search": OptimizerSpec(dspy.BootstrapFewShotWithRandomSearch,
                                   "several bootstrapped demo sets, the best one on the dev split",
                                   {"max_bootstrapped_demos": 4, "max_labeled_demos": 4, "metric_threshold": 0.5,
                                    "num_candidate_programs": 4}),
    "mipro": OptimizerSpec(dspy.MIPROv2, "instructions and demos searched together (Bayesian optimization)",
                           {"auto": "light", "max_bootstrapped_demos": 4, "max_labeled_demos": 4,
                            "metric_threshold": 0.5},
                           budget_keys=("auto", "num_candidates", "num_trials"), data_defaults=_mipro_sizes),
    "gepa": OptimizerSpec(dspy.GEPA, "instructions rewritten by a reflection LM from the metric's feedback",
                          {"max_full_evals": 2}, needs_reflection_lm=True,
                          budget_keys=("auto", "max_full_evals", "max_metric_calls")),
}


def get_optimizer(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["k=4", "auto=medium", "auto=null"]`` -> ``{"k": 4, "auto": None}``: JSON values, else plain strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"optimizer setting {pair!r} is not KEY=VALUE")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
