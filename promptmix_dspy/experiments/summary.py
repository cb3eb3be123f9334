"""Mean ± sample standard deviation over seeds, per (dataset, method): what the table and the plots show."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from promptmix_dspy.store.files import read_journal

__all__ = ["generation_stats", "interval", "mean_std", "summarize"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the deviation of a single value is 0."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """The t interval of the mean over seeds (scipy.stats); None below two values."""
    from scipy import stats

    if len(values) < 2:
        return None
    sem = stats.sem(values)
    mean = statistics.fmean(values)
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def summarize(rows: Sequence[dict], metric: str = "accuracy") -> dict[tuple[str, str], dict[str, Any]]:
    """{(dataset, method): {mean, std, interval, n, values}} over the seeds present."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["method"])].append(row[metric])
    out = {}
    for key, values in groups.items():
        mean, std = mean_std(values)
        out[key] = {"mean": mean, "std": std, "interval": interval(values), "n": len(values), "values": values}
    return out


def generation_stats(folder: Path) -> dict[str, Any]:
    """What a finished generation folder (an `augment` run or a grid's generation) cost and kept, from its journals.

    Tokens and call-seconds are per final example (augmented.jsonl), at face value as the endpoint reported them
    (generation and relabeling together; ``generate_*`` alone for the generation calls); ``kept_per_call`` is the
    texts a generation call kept after clean-up, ``seed_copy_share`` the written texts dropped as seed copies,
    ``relabeled_share`` the final examples the relabeler put in another class than the one they were written for."""
    folder = Path(folder)
    generated, relabeled = read_journal(folder / "generated.jsonl"), read_journal(folder / "relabeled.jsonl")
    augmented = read_journal(folder / "augmented.jsonl")
    final = len(augmented)
    if not final:
        raise ValueError(f"{folder}: no final examples (augmented.jsonl missing or empty): is the run finished?")
    usage = [r.get("usage") or {} for r in generated + relabeled]
    generate_usage = [r.get("usage") or {} for r in generated]
    prompt, completion = sum(u.get("prompt_tokens", 0) for u in usage), sum(u.get("completion_tokens", 0) for u in usage)
    raw = sum(len(r.get("raw_texts") or []) for r in generated)
    copies = sum(1 for r in generated for _, why in (r.get("dropped") or []) if why == "seed_copy")
    return {"final": final, "generate_calls": len(generated), "relabel_calls": len(relabeled),
            "prompt_per_example": prompt / final, "completion_per_example": completion / final,
            "tokens_per_example": (prompt + completion) / final,
            "generate_tokens_per_example": sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
                                               for u in generate_usage) / final,
            "generate_seconds_per_example": sum(u.get("seconds", 0) for u in generate_usage) / final,
            "kept_per_call": sum(len(r.get("texts") or []) for r in generated) / max(1, len(generated)),
            "written": raw, "seed_copy_share": copies / max(1, raw),
            "relabeled_share": sum(r["label"] != r["generated_for"] for r in augmented) / final,
            "call_seconds_per_example": sum(u.get("seconds", 0) for u in usage) / final}
