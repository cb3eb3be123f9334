"""The mix plan: class groups, minority (partner) choice and majority shares. Pure and seeded.

Faithful to the authors' released code: classes are visited in turn and each forms a group with up to 3
not-yet-visited classes (filled from visited ones near the end); a call's minority class is drawn uniformly
from the rest of its group; the majority share is 0.5 + 0.5 * Beta(5, 2), rounded to 0.05.

Every call gets its own ``random.Random`` derived from (seed, class, call index), so the plan does not depend
on the order calls run in, and a resumed or extended run reproduces the same calls.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

__all__ = ["MixCall", "class_groups", "mix_plan", "sample_majority_share"]


@dataclass(frozen=True)
class MixCall:
    """One generation request: ask for ``num_texts`` texts that are majority_share majority, rest minority."""

    call_id: str
    majority: str
    minority: str | None
    majority_share: float
    group: tuple[str, ...]
    num_texts: int
    sample_index: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MixCall":
        return cls(**{**d, "group": tuple(d["group"])})


def sample_majority_share(rng: random.Random, a: float = 5.0, b: float = 2.0, step: float = 0.05) -> float:
    """0.5 + 0.5 * Beta(a, b), rounded to the nearest ``step``: in [0.5, 1.0], mode 0.9 for Beta(5, 2)."""
    raw = 0.5 + 0.5 * rng.betavariate(a, b)
    return round(round(raw / step) * step, 4)


def class_groups(labels: list[str], rng: random.Random, group_size: int = 4) -> dict[str, tuple[str, ...]]:
    """Map each class to its group: itself first, then up to group_size-1 partners.

    Partners are drawn from classes not yet visited (later in label order); when fewer remain, the group is
    filled from the visited ones, so every class gets a full group when the dataset has enough classes.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2, got {group_size}")
    groups = {}
    for i, label in enumerate(labels):
        want = min(group_size - 1, len(labels) - 1)
        later, earlier = list(labels[i + 1:]), list(labels[:i])
        partners = rng.sample(later, min(want, len(later)))
        partners += rng.sample(earlier, want - len(partners))
        groups[label] = (label, *partners)
    return groups


def mix_plan(
    labels: list[str],
    per_class: int,
    seed: int,
    *,
    texts_per_call: int = 3,
    group_size: int = 4,
    fixed_share: float | None = None,
    start_index: int | dict[str, int] = 0,
    calls_per_class: int | dict[str, int] | None = None,
) -> list[MixCall]:
    """Plan the generation calls: ceil(per_class / texts_per_call) calls per class, classes in label order.

    ``fixed_share`` replaces the Beta draw (1.0 gives the no-mix ablation, whose calls have no minority).
    ``start_index`` / ``calls_per_class`` (one number, or one per class: classes absent from the dict get no
    calls) plan a later round of extra calls with fresh, still seeded, draws. Groups always come from all labels.
    """
    if per_class < 1 or texts_per_call < 1:
        raise ValueError(f"per_class and texts_per_call must be >= 1, got {per_class}, {texts_per_call}")
    if fixed_share is not None and not 0.5 <= fixed_share <= 1.0:
        raise ValueError(f"fixed majority share must be in [0.5, 1.0], got {fixed_share}")
    groups = class_groups(labels, random.Random(f"{seed}:groups"), group_size)
    n_calls = calls_per_class if calls_per_class is not None else math.ceil(per_class / texts_per_call)
    counts = n_calls if isinstance(n_calls, dict) else dict.fromkeys(labels, n_calls)
    starts = start_index if isinstance(start_index, dict) else dict.fromkeys(labels, start_index)
    plan = []
    for label in labels:
        first = starts.get(label, 0)
        for j in range(first, first + counts.get(label, 0)):
            plan.append(_plan_call(label, groups[label], j, seed, texts_per_call, fixed_share))
    return plan


def _plan_call(label: str, group: tuple[str, ...], j: int, seed: int, n: int, fixed_share: float | None) -> MixCall:
    rng = random.Random(f"{seed}:{label}:{j}")
    others = [c for c in group if c != label]
    share = fixed_share if fixed_share is not None else sample_majority_share(rng)
    partner = rng.choice(others) if others else None
    minority = partner if share < 1.0 else None  # a pure call (share 1.0) mixes in nothing
    return MixCall(call_id=f"{label}#{j}", majority=label, minority=minority, majority_share=share,
                   group=group, num_texts=n, sample_index=j)
