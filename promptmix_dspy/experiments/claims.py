"""The paper's claims checked against a grid's numbers by paired statistics over seeds.

For a claim "A beats B" on a dataset, every seed whose A and B cells were made on the same shared inputs (the
same data files, the same few-shot seeds, the same generated texts where both read one: ``Claim.shared``, checked
on each row's ``inputs`` record) gives one paired difference A - B. From those differences: the mean, its 95%
interval (Student's t with n - 1 degrees of freedom, scipy.stats), and how many seeds agree. The rule:

- **holds**: at least ``MIN_SEEDS`` paired seeds and the interval lies above 0;
- **does not hold**: at least ``MIN_SEEDS`` paired seeds and the interval lies below 0;
- **within the noise**: at least ``MIN_SEEDS`` paired seeds and the interval contains 0;
- **too few seeds**: fewer than ``MIN_SEEDS`` paired seeds (no verdict).

A seed whose cells differ in a shared input is not paired, and the line says which input differed: comparing a
student trained on one sample of generated texts with one trained on another is not a paired comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from promptmix_dspy.experiments.spec import dataset_key

__all__ = ["CLAIMS", "MIN_SEEDS", "RULE", "Claim", "PairedStat", "claims_section", "paired", "paired_stat",
           "verdict"]

MIN_SEEDS = 3
CONFIDENCE = 0.95
RULE = (f"A claim *holds* where the {100 * CONFIDENCE:.0f}% interval of the mean paired difference over seeds "
        f"(Student's t, scipy.stats) lies above 0 with at least {MIN_SEEDS} paired seeds, *does not hold* where it "
        f"lies below 0, is *within the noise* where it contains 0, and has *too few seeds* below {MIN_SEEDS}. Two "
        f"cells of a seed are paired only when the inputs they share (data files, few-shot seeds, generated texts "
        f"where both read them, the teacher's test sample) are byte-identical (each row's `inputs`); any other "
        f"seed is listed as unpaired.")


@dataclass(frozen=True)
class Claim:
    text: str
    better: str  # the method the claim says is better
    worse: str   # the method it is compared with
    shared: tuple[str, ...] = ("data", "seeds")  # the `inputs` keys both cells of a seed must have equal
    metric_key: str | None = None  # None: the row's own metric; "teacher_sample": its figure on the teacher's texts


MIX = ("data", "seeds", "generation")
CLAIMS = (
    Claim("relabeling matters (A2 beats A1)", "a2", "a1", MIX),
    Claim("PromptMix beats the 2-shot baseline", "a2", "baseline"),
    Claim("PromptMix beats 5-shot EDA-style augmentation (2-shot PromptMix vs EDA on the seeds)", "a2", "eda"),
    Claim("2-shot PromptMix beats 5 seeds per class", "a2", "baseline5", ("data",)),
    Claim("mixing helps (A2 beats the no-mix ablation)", "a2", "nomix"),
    Claim("compiled relabeler helps (a2c beats a2, same texts)", "a2c", "a2", MIX),
    Claim("probabilities help (a2p beats a2, same texts)", "a2p", "a2", MIX),
    Claim("a2p beats the 2-shot baseline", "a2p", "baseline"),
    Claim("a2p beats EDA", "a2p", "eda"),
    Claim("a2p beats 5 seeds per class", "a2p", "baseline5", ("data",)),
    Claim("calibration helps the teacher (llm-cal beats llm)", "llm-cal", "llm", ("data", "seeds", "teacher_sample")),
    Claim("more generated texts help (a2x, 30 per class, beats a2, 10)", "a2x", "a2"),
    Claim("still more help (a2x10, 100 per class, beats a2x, 30)", "a2x10", "a2x"),
    Claim("compiling the relabeler on 10 more labels per class helps (a2c-dev beats a2, same texts)", "a2c-dev",
          "a2", MIX),
    Claim("with 10 more labels per class: compiling with them beats training on them (a2c-dev vs baseline-dev)",
          "a2c-dev", "baseline-dev"),
    Claim("with 10 more labels per class: PromptMix plus the labels beats the labels alone (a2-dev vs "
          "baseline-dev)", "a2-dev", "baseline-dev"),
    Claim("a second round on the student's confusions helps at equal tokens (a2fb beats a2x)", "a2fb", "a2x"),
)
TEACHER_GAPS = (("a2", "llm"), ("a2p", "llm-cal"))  # student vs the teacher it distils, on the teacher's texts


@dataclass(frozen=True)
class PairedStat:
    """The paired differences of one claim on one dataset (better - worse, per seed)."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    unpaired: tuple[str, ...] = ()  # "seed 2: generation differs"

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return sum(self.differences) / self.n if self.n else math.nan

    @property
    def wins(self) -> int:
        return sum(d > 0 for d in self.differences)

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The t interval of the mean difference (scipy.stats); a point when every difference is the same."""
        from scipy import stats

        if self.n < 2:
            return (math.nan, math.nan)
        sem = stats.sem(self.differences)
        if sem == 0:
            return (self.mean, self.mean)
        low, high = stats.t.interval(confidence, self.n - 1, loc=self.mean, scale=sem)
        return float(low), float(high)


def _value(row: dict, metric: str, metric_key: str | None) -> float | None:
    if metric_key is None:
        return row.get(metric)
    return (row.get(metric_key) or {}).get(metric)


def paired(better: Sequence[dict], worse: Sequence[dict], shared: Sequence[str], metric: str = "accuracy",
           metric_key: str | None = None, worse_key: str | None = None) -> PairedStat:
    """Pair two methods' rows of one dataset by seed, only where the ``shared`` inputs are identical."""
    by_seed_b = {r["seed"]: r for r in better}
    by_seed_w = {r["seed"]: r for r in worse}
    seeds, diffs, unpaired = [], [], []
    for seed in sorted(set(by_seed_b) & set(by_seed_w)):
        a, b = by_seed_b[seed], by_seed_w[seed]
        differs = [k for k in shared if _input(a, k) is None or _input(a, k) != _input(b, k)]
        va, vb = _value(a, metric, metric_key), _value(b, metric, worse_key)
        if differs or va is None or vb is None:
            why = ", ".join(differs) + " differ" if differs else f"no {metric_key or metric} figure"
            if any(_input(r, k) is None for r in (a, b) for k in differs):
                why = "no input identity recorded (" + ", ".join(differs) + ")"
            unpaired.append(f"seed {seed}: {why}")
            continue
        seeds.append(seed)
        diffs.append(va - vb)
    return PairedStat(tuple(seeds), tuple(diffs), tuple(unpaired))


def _input(row: dict, key: str):
    return (row.get("inputs") or {}).get(key)


def verdict(stat: PairedStat, min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
    """(verdict, the numbers behind it) by the module's rule."""
    note = f"; unpaired: {'; '.join(stat.unpaired)}" if stat.unpaired else ""
    if stat.n < min_seeds:
        shown = f", {100 * stat.mean:+.1f} points" if stat.n else ""
        return "too few seeds", f"{stat.n} paired seed(s){shown}{note}"
    low, high = stat.interval()
    numbers = (f"{100 * stat.mean:+.1f} points, 95% interval [{100 * low:+.1f}, {100 * high:+.1f}], higher on "
               f"{stat.wins} of {stat.n} seeds{note}")
    if low > 0:
        return "holds", numbers
    if high < 0:
        return "does not hold", numbers
    return "within the noise", numbers


def paired_stat(rows: Sequence[dict], dataset: str, claim: Claim, metric: str = "accuracy") -> PairedStat:
    pick = lambda method: [r for r in rows if r["dataset"] == dataset and r["method"] == method]  # noqa: E731
    return paired(pick(claim.better), pick(claim.worse), claim.shared, metric, claim.metric_key)


def claims_section(rows: Sequence[dict], datasets: Sequence[str], methods: Sequence[str],
                   metric: str = "accuracy") -> list[str]:
    """Markdown lines: one row per claim whose methods are in the grid, one column per dataset, and the
    teacher gaps (the student on the teacher's own test texts against the teacher)."""
    lines = ["| claim | " + " | ".join(dataset_key(d) for d in datasets) + " |", "|---|" + "---|" * len(datasets)]
    for claim in CLAIMS:
        if claim.better not in methods or claim.worse not in methods:
            continue
        cells = [_cell(verdict(paired_stat(rows, d, claim, metric))) for d in datasets]
        lines.append(f"| {claim.text} | " + " | ".join(cells) + " |")
    for student, teacher in TEACHER_GAPS:
        if student in methods and teacher in methods:
            cells = [_teacher_gap(rows, d, student, teacher, metric) for d in datasets]
            lines.append(f"| {student} vs its teacher {teacher}, on the teacher's test texts | " + " | ".join(cells)
                         + " |")
    return lines


def _cell(result: tuple[str, str]) -> str:
    return f"**{result[0]}**: {result[1]}"


def teacher_gap(rows: Sequence[dict], dataset: str, student: str, teacher: str,
                metric: str = "accuracy") -> PairedStat:
    """Student minus teacher per seed, the student scored on the teacher's own sample of test texts."""
    pick = lambda method: [r for r in rows if r["dataset"] == dataset and r["method"] == method]  # noqa: E731
    return paired(pick(student), pick(teacher), ("data", "seeds", "teacher_sample"), metric, "teacher_sample", None)


def _teacher_gap(rows: Sequence[dict], dataset: str, student: str, teacher: str, metric: str) -> str:
    stat = teacher_gap(rows, dataset, student, teacher, metric)
    if not stat.n:
        return "**pending**" + (f": {'; '.join(stat.unpaired)}" if stat.unpaired else "")
    where = "below" if stat.mean < 0 else "above"
    low, high = stat.interval()
    interval = f", 95% interval [{100 * low:+.1f}, {100 * high:+.1f}]" if stat.n >= 2 else ""
    return f"{100 * abs(stat.mean):.1f} points {where} the teacher ({stat.n} seed(s){interval})"
