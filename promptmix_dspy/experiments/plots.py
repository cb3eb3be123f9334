"""The grid's figures, drawn on ``matplotlib.figure.Figure`` (Agg canvas): no pyplot state, no display.

- plot_accuracy: test accuracy by method and dataset (bars = mean over seeds, whiskers = sample std, dots = seeds);
- plot_boundary: a PCA projection of MiniLM sentence embeddings: a sample of train texts (the class clusters),
  the seed examples (stars) and the generated texts coloured by final label (crosses where the LLM relabeled);
- plot_label_matrix: how many texts generated for class A ended up labelled B, pooled over seeds.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

__all__ = ["BACKGROUND_PER_CLASS", "BUDGET_METHODS", "budget_points", "label_matrix", "plot_accuracy",
           "plot_boundary", "plot_budget", "plot_confusion_pair", "plot_label_matrix", "read_jsonl_rows"]

BACKGROUND_PER_CLASS = 40  # train texts per class drawn as the class clusters (train only, never test)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def read_jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_accuracy(rows: Sequence[dict], datasets: Sequence[str], methods: Sequence[str], path: Path) -> Path:
    """Grouped bars: one group per method, one bar per dataset."""
    from promptmix_dspy.experiments.summary import summarize

    stats = summarize(rows)
    fig = _figure(max(6.0, 1.1 * len(methods) * max(1, len(datasets)) ** 0.5 + 2), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / len(datasets)
    for j, (dataset, colour) in enumerate(zip(datasets, _colours(len(datasets)))):
        for i, method in enumerate(methods):
            stat = stats.get((dataset, method))
            if stat is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, 100 * stat["mean"], width * 0.9, yerr=100 * stat["std"], color=colour, alpha=0.8,
                   capsize=3, label=dataset if i == 0 or (dataset, methods[0]) not in stats else None)
            ax.scatter([x] * stat["n"], [100 * v for v in stat["values"]], s=9, color="black", zorder=3)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Accuracy by method and dataset (mean ± std over seeds; dots = seeds)", fontsize=10)
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_boundary(dataset: str, gen_dir: Path, data_dir: str | None, path: Path,
                  encoder: Any = None, train: Sequence[Any] | None = None) -> Path:
    """The boundary picture of one generation (seed examples, class clusters, generated texts)."""
    gen_dir = Path(gen_dir)
    labels = json.loads((gen_dir / "labels.json").read_text(encoding="utf-8"))
    seeds, generated = read_jsonl_rows(gen_dir / "seeds.jsonl"), read_jsonl_rows(gen_dir / "augmented.jsonl")
    background = _background(train if train is not None else _train(dataset, data_dir), labels,
                             {s["text"] for s in seeds})
    groups = {"train": background, "seed": seeds, "generated": generated}
    points = _project([r["text"] for g in groups.values() for r in g], encoder)
    colour = dict(zip(labels, _colours(len(labels))))
    fig = _figure(7.5, 6.0)
    ax = fig.add_subplot()
    start = 0
    for name, group in groups.items():
        xy = points[start:start + len(group)]
        start += len(group)
        _scatter(ax, name, group, xy, colour)
    _boundary_legend(ax, labels, colour)
    ax.set_title(f"{Path(dataset).stem} ({gen_dir.parent.name}): MiniLM embeddings, PCA. Dots: train sample; "
                 f"stars: seeds; circles: generated (cross = relabeled), colour = final label", fontsize=8, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.savefig(path, dpi=120)
    return Path(path)


def _train(dataset: str, data_dir: str | None) -> list:
    from promptmix_dspy.data.datasets import load_dataset

    return load_dataset(dataset, data_dir=data_dir).train


def _background(train: Sequence[Any], labels: list[str], exclude: set[str]) -> list[dict]:
    """Up to BACKGROUND_PER_CLASS train texts per class, a fixed seeded sample."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for ex in train:
        if ex.text not in exclude:
            by_label[ex.label].append(ex.text)
    rng = random.Random(0)
    return [{"text": t, "label": label} for label in labels
            for t in rng.sample(by_label[label], min(BACKGROUND_PER_CLASS, len(by_label[label])))]


def _project(texts: list[str], encoder: Any) -> Any:
    from sklearn.decomposition import PCA

    from promptmix_dspy.method.candidates import SentenceEncoder

    vectors = (encoder or SentenceEncoder()).encode(texts)
    return PCA(n_components=2, random_state=0).fit_transform(vectors)


def _scatter(ax: Any, name: str, group: list[dict], xy: Any, colour: dict) -> None:
    if not group:
        return
    colours = [colour[r["label"]] for r in group]
    if name == "train":
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=10, alpha=0.25, linewidths=0)
    elif name == "seed":
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=260, marker="*", edgecolors="black", linewidths=0.8, zorder=4)
    else:
        kept = [i for i, r in enumerate(group) if not r.get("relabeled")]
        moved = [i for i, r in enumerate(group) if r.get("relabeled")]
        ax.scatter(xy[kept, 0], xy[kept, 1], c=[colours[i] for i in kept], s=40, edgecolors="black",
                   linewidths=0.5, zorder=3)
        ax.scatter(xy[moved, 0], xy[moved, 1], c=[colours[i] for i in moved], s=55, marker="X",
                   edgecolors="black", linewidths=0.5, zorder=3)


def _boundary_legend(ax: Any, labels: list[str], colour: dict) -> None:
    from matplotlib.lines import Line2D

    if len(labels) > 20:
        return
    handles = [Line2D([], [], marker="o", linestyle="", color=colour[label], label=label) for label in labels]
    ax.legend(handles=handles, fontsize=7, loc="best", title="label", title_fontsize=7)


def label_matrix(rows: Sequence[dict], labels: Sequence[str]) -> list[list[int]]:
    """Counts: rows = generated_for, columns = final label."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for row in rows:
        matrix[index[row["generated_for"]]][index[row["label"]]] += 1
    return matrix


def plot_label_matrix(dataset: str, gen_dirs: Sequence[Path], path: Path) -> Path:
    """generated_for -> final label over the given generations (seeds pooled), row-normalised colour, counts."""
    labels = json.loads((Path(gen_dirs[0]) / "labels.json").read_text(encoding="utf-8"))
    rows = [r for d in gen_dirs for r in read_jsonl_rows(Path(d) / "augmented.jsonl")]
    matrix = label_matrix(rows, labels)
    rates = [[c / max(sum(row), 1) for c in row] for row in matrix]
    n = len(labels)
    fig = _figure(max(4.5, 0.4 * n + 3), max(4.0, 0.4 * n + 2.5))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Oranges", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the texts generated for the class")
    font = 8 if n <= 20 else 4
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("final label (after relabeling)")
    ax.set_ylabel("generated for")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if n <= 20:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                        color="white" if rates[i][j] > 0.5 else "black")
    ax.set_title(f"{dataset}: {len(rows)} generated texts over {len(gen_dirs)} seed(s)", fontsize=9)
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_confusion_pair(before: dict, after: dict, labels: Sequence[str], pairs: Sequence[dict],
                        path: Path) -> Path:
    """Two confusion matrices side by side (rows: the LLM's label, columns: the student's prediction, colour:
    the share of the row), before and after the second round; the pairs round 2 aimed at are outlined."""
    from matplotlib.patches import Rectangle

    n = len(labels)
    fig = _figure(max(8.0, 0.8 * n + 5), max(4.0, 0.4 * n + 2.5))
    font = 8 if n <= 20 else 4
    for k, (title, confusion) in enumerate((("before round 2 (round-1 student)", before),
                                            ("after round 2 (final student)", after))):
        ax = fig.add_subplot(1, 2, k + 1)
        counts = [[confusion.get(a, {}).get(b, 0) for b in labels] for a in labels]
        rates = [[c / max(sum(row), 1) for c in row] for row in counts]
        ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
        ax.set_yticks(range(n), labels, fontsize=font)
        ax.set_xlabel("student's prediction")
        ax.set_ylabel("LLM's label (held-out probe texts)")
        ax.set_title(title, fontsize=9)
        for i, row in enumerate(counts):
            for j, count in enumerate(row):
                if n <= 20 and count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                            color="white" if rates[i][j] > 0.5 else "black")
        for pair in pairs:
            i, j = labels.index(pair["true"]), labels.index(pair["predicted"])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    fig.savefig(path, dpi=120)
    return Path(path)


BUDGET_METHODS = (("a2", 10), ("a2x", 30), ("a2x10", 100))  # texts per class each generates


def budget_points(rows: Sequence[dict], dataset: str) -> list[dict]:
    """Per budget row of a dataset: texts per class, mean accuracy, mean LLM call-seconds and tokens per seed."""
    import statistics

    out = []
    for method, per_class in BUDGET_METHODS:
        cell = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
        if not cell:
            continue
        seconds = [sum((r.get("llm_call_seconds") or {}).values()) for r in cell]
        tokens = [(r.get("llm") or {}).get("prompt_tokens", 0) + (r.get("llm") or {}).get("completion_tokens", 0)
                  + ((r.get("llm") or {}).get("cache_served_tokens") or 0) for r in cell]
        out.append({"method": method, "per_class": per_class, "n": len(cell),
                    "accuracy": statistics.fmean(r["accuracy"] for r in cell),
                    "seconds": statistics.fmean(seconds), "tokens": statistics.fmean(tokens)})
    return out


def plot_budget(rows: Sequence[dict], datasets: Sequence[str], path: Path) -> Path | None:
    """Student accuracy against the LLM's call-seconds and tokens, at 10, 30 and 100 generated texts per class:
    the curve a user needs to choose a budget. None when no dataset has two budget rows."""
    curves = {d: budget_points(rows, d) for d in datasets}
    curves = {d: pts for d, pts in curves.items() if len(pts) >= 2}
    if not curves:
        return None
    fig = _figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for (dataset, pts), colour in zip(curves.items(), _colours(len(curves))):
        for ax, key in zip(axes, ("seconds", "tokens")):
            ax.plot([p[key] for p in pts], [100 * p["accuracy"] for p in pts], marker="o", color=colour,
                    label=dataset)
            for p in pts:
                ax.annotate(f"{p['per_class']}/class", (p[key], 100 * p["accuracy"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
    for ax, label in zip(axes, ("LLM call-seconds per seed (generation + relabeling)",
                                "LLM tokens per seed (prompt + completion, cache-served included)")):
        ax.set_xscale("log")
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("student test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("What more generated texts buy (a2 / a2x / a2x10; means over seeds)", fontsize=10)
    fig.savefig(path, dpi=120)
    return Path(path)
