"""Which student a2p should be: measured on labelled *train* texts outside the seeds, never on test.

For each dataset, the seed's mix generation of the grid (its augmented.jsonl: every generated text with the LLM's
answer, its raw and calibrated probabilities) trains four students, all with the grid's settings (300 steps at
least, the packaged MiniLM): the LLM's answers as hard labels (a2), the calibrated argmax as hard labels, the
calibrated probabilities as soft targets (a2p), and soft targets without the rows whose label's probability is
below 0.5. Each is scored on the same texts benchmarks/relabel_quality.py labels (up to 120 train texts outside
seed 0's seeds, seeded), so the choice never sees a test label.

    python evals/soft_labels_choice.py --grid runs/bench_v2 --data-dir ../shared/data \
        --out evals/results/soft_labels_choice.md [--datasets trec6,subj,twitter_complaints] [--seeds 0,1,2]
        [--json evals/results/soft_labels_choice.json]

With several seeds, each seed's generation trains its own four students and the table adds each variant's mean over
the seeds; the choice is the variant with the best mean macro-F1 over the datasets. --json keeps every measured row
and a re-run measures only what is missing from it (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

VARIANTS = {  # name: (label field, probabilities field, TrainConfig fields)
    "hard, the LLM's answers (a2)": ("label_raw", None, {}),
    "hard, calibrated argmax": ("label", None, {}),
    "soft, calibrated (a2p)": ("label", "probs", {"targets": "soft"}),
    "soft, calibrated, confidence >= 0.5": ("label", "probs", {"targets": "soft", "min_confidence": 0.5}),
}


def rows_for(generated: list[dict], label_field: str, probs_field: str | None) -> list:
    from promptmix_dspy.data.types import Example

    return [Example(r["text"], r.get(label_field, r["label"]),
                    tuple(r[probs_field].items()) if probs_field and r.get(probs_field) else None) for r in generated]


def measure(dataset: str, grid: Path, data_dir: str, seed: int) -> list[dict]:
    from relabel_quality import sample

    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split
    from promptmix_dspy.student.evaluate import evaluate_model
    from promptmix_dspy.student.train import TrainConfig, train_student

    ds = load_dataset(dataset, data_dir=data_dir)
    split = few_shot_split(ds, 2, seed)
    heldout = sample(ds, 120, {e.text for e in few_shot_split(ds, 2, 0).seeds} | {e.text for e in split.seeds})
    path = grid / "generations" / dataset / f"seed{seed}" / "mix" / "augmented.jsonl"
    generated = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for name, (label_field, probs_field, extra) in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig.for_dataset(dataset, seed=seed, **extra)
            student = train_student(list(split.seeds) + rows_for(generated, label_field, probs_field), ds.labels,
                                    config, Path(tmp) / "s")
            report = evaluate_model(student, heldout)
        out.append({"dataset": dataset, "seed": seed, "variant": name, "texts": len(heldout),
                    "accuracy": report["accuracy"], "macro_f1": report["macro_f1"]})
        print(out[-1], flush=True)
    return out


def summarise(rows: list[dict], datasets: list[str], seeds: list[int]) -> tuple[list[str], str]:
    """Each variant's mean accuracy and macro-F1 per dataset over the seeds, and the variant with the best mean
    macro-F1 over the datasets."""
    from statistics import mean

    lines = ["| dataset | student | seeds | accuracy (mean) | macro-F1 (mean) |", "|---|---|---:|---:|---:|"]
    overall: dict[str, list[float]] = {}
    for dataset in datasets:
        for variant in VARIANTS:
            cell = [r for r in rows if r["dataset"] == dataset and r["variant"] == variant and r["seed"] in seeds]
            if not cell:
                continue
            f1 = mean(r["macro_f1"] for r in cell)
            overall.setdefault(variant, []).append(f1)
            lines.append(f"| {dataset} | {variant} | {len(cell)} | {100 * mean(r['accuracy'] for r in cell):.1f}% | "
                         f"{100 * f1:.1f} |")
    means = {v: mean(f) for v, f in overall.items() if len(f) == len(datasets)}
    best = max(means, key=means.get) if means else ""
    ranking = ", ".join(f"{v} {100 * f:.1f}" for v, f in sorted(means.items(), key=lambda kv: -kv[1]))
    return lines, (f"Mean macro-F1 over the datasets: {ranking}. Best: **{best}**." if best else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="runs/bench_v2")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--datasets", default="trec6,subj,twitter_complaints")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds whose mix generations train students")
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None, help="every measured row; a re-run measures only what is missing")
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    rows: list[dict] = []
    if args.json and Path(args.json).exists():
        rows = json.loads(Path(args.json).read_text(encoding="utf-8"))
    for dataset in datasets:
        for seed in seeds:
            if any(r["dataset"] == dataset and r["seed"] == seed for r in rows):
                continue
            rows += measure(dataset, Path(args.grid), args.data_dir, seed)
            if args.json:  # after each seed: an interruption loses at most one seed's students
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    lines = ["| dataset | seed | student | held-out train texts | accuracy | macro-F1 |", "|---|---:|---|---:|---:|---:|"]
    lines += [f"| {r['dataset']} | {r['seed']} | {r['variant']} | {r['texts']} | {100 * r['accuracy']:.1f}% | "
              f"{100 * r['macro_f1']:.1f} |" for r in rows if r["dataset"] in datasets and r["seed"] in seeds]
    summary, choice = summarise(rows, datasets, seeds)
    text = (f"# Which student a2p is: soft targets or hard labels (seeds {', '.join(map(str, seeds))})\n\n"
            f"`python evals/soft_labels_choice.py {' '.join(sys.argv[1:])}`\n\nLabelled train texts outside the seeds "
            f"(never test); every student trained on its seed's seeds plus the same generated texts.\n\n"
            + "\n".join(summary) + "\n\n" + choice + "\n\nPer seed:\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
