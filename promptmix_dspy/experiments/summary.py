"""Mean ± sample standard deviation over seeds, per (dataset, method): what the table and the plots show."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Sequence

__all__ = ["mean_std", "summarize"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the deviation of a single value is 0."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: Sequence[dict], metric: str = "accuracy") -> dict[tuple[str, str], dict[str, Any]]:
    """{(dataset, method): {mean, std, n, values}} over the seeds present."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["method"])].append(row[metric])
    out = {}
    for key, values in groups.items():
        mean, std = mean_std(values)
        out[key] = {"mean": mean, "std": std, "n": len(values), "values": values}
    return out
