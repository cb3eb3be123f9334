"""The paper's claims checked against a grid's numbers: for each claim and dataset, the difference of the mean
accuracies, how many seeds agree, and a verdict that says only what the numbers show.

A claim *holds* on a dataset when the method's mean is higher by more than the larger of the two sample standard
deviations and most paired seeds agree; it *does not hold* when the mean is lower by that much; otherwise the
difference is *within the noise*. With fewer than two paired seeds no verdict is given. The teacher's claim
compares the student with the teacher's score on its (sampled) test texts.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from promptmix_dspy.experiments.spec import dataset_key

__all__ = ["CLAIMS", "Claim", "claims_section", "verdict"]


@dataclass(frozen=True)
class Claim:
    text: str
    better: str  # the method the claim says is better
    worse: str   # the method it is compared with


CLAIMS = (
    Claim("relabeling matters (A2 beats A1)", "a2", "a1"),
    Claim("PromptMix beats the 2-shot baseline", "a2", "baseline"),
    Claim("PromptMix beats 5-shot EDA-style augmentation (2-shot PromptMix vs EDA on the seeds)", "a2", "eda"),
    Claim("2-shot PromptMix beats 5 seeds per class", "a2", "baseline5"),
    Claim("mixing helps (A2 beats the no-mix ablation)", "a2", "nomix"),
    Claim("compiled programs help (a2c beats a2)", "a2c", "a2"),
    Claim("a second round on the student's confusions helps at equal tokens (a2fb beats a2x)", "a2fb", "a2x"),
)


def _by_seed(rows: Sequence[dict], dataset: str, method: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows if r["dataset"] == dataset and r["method"] == method}


def verdict(better: dict[int, float], worse: dict[int, float]) -> tuple[str, str]:
    """(verdict, the numbers behind it) for two methods' per-seed scores."""
    paired = sorted(set(better) & set(worse))
    if len(paired) < 2:
        return "pending", f"{len(paired)} paired seed(s)"
    a, b = [better[s] for s in paired], [worse[s] for s in paired]
    diff = statistics.fmean(a) - statistics.fmean(b)
    noise = max(statistics.stdev(a), statistics.stdev(b))
    wins = sum(x > y for x, y in zip(a, b))
    numbers = f"{100 * diff:+.1f} points (noise {100 * noise:.1f}), higher on {wins} of {len(paired)} seeds"
    if diff > noise and wins > len(paired) / 2:
        return "holds", numbers
    if -diff > noise and wins < len(paired) / 2:
        return "does not hold", numbers
    return "within the noise", numbers


def claims_section(rows: Sequence[dict], datasets: Sequence[str], methods: Sequence[str],
                   metric: str = "accuracy") -> list[str]:
    """Markdown lines: one row per claim (whose methods are in the grid) and dataset."""
    lines = ["| claim | " + " | ".join(dataset_key(d) for d in datasets) + " |", "|---|" + "---|" * len(datasets)]
    for claim in CLAIMS:
        if claim.better not in methods or claim.worse not in methods:
            continue
        cells = []
        for dataset in datasets:
            word, numbers = verdict(_by_seed(rows, dataset, claim.better, metric),
                                    _by_seed(rows, dataset, claim.worse, metric))
            cells.append(f"**{word}**: {numbers}")
        lines.append(f"| {claim.text} | " + " | ".join(cells) + " |")
    if "llm" in methods and "a2" in methods:
        lines.append("| PromptMix comes close to its teacher (a2 vs llm) | " + " | ".join(
            _teacher_gap(rows, d, metric) for d in datasets) + " |")
    return lines


def _teacher_gap(rows: Sequence[dict], dataset: str, metric: str) -> str:
    student = list(_by_seed(rows, dataset, "a2", metric).values())
    teacher = list(_by_seed(rows, dataset, "llm", metric).values())
    if not student or not teacher:
        return "**pending**"
    gap = statistics.fmean(teacher) - statistics.fmean(student)
    return f"the student is {100 * gap:.1f} points below the teacher" if gap > 0 else \
        f"the student is {-100 * gap:.1f} points above the teacher"
