"""The 2-shot baseline: a student trained on the seeds alone (2 per class, no augmentation), on the four
datasets over seeds 0, 1, 2; mean and standard deviation of test accuracy and macro-F1.

Each seed draws its own few-shot split (``few_shot_split(k=2, seed=s)``) and trains with that seed. Settings
are the authors' student defaults (5 epochs, batch 8, lr 4e-5, 6e-5 and weight decay 0.001 on Banking77,
warmup 0.1, max length 50); the student is the packaged all-MiniLM-L6-v2 (the paper used DistilBERT, which is
not available offline here). The test split is used once per run, for the final score only.

    python evals/baseline_2shot.py --data-dir ../shared/data
writes evals/results/baseline_2shot.{json,md}; finished runs under --out are reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from promptmix_dspy.data.builtins import BUILTIN_DATASETS
from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.student.evaluate import evaluate_model
from promptmix_dspy.student.train import TrainConfig, train_student

RESULTS = Path(__file__).resolve().parent / "results"


def run_one(name: str, seed: int, args: argparse.Namespace) -> dict:
    """Train on the seeds of one split and score on test; reuse the report if this run already finished."""
    out = Path(args.out) / name / f"seed{seed}"
    if (out / "eval" / "report.json").is_file():
        return json.loads((out / "eval" / "report.json").read_text())
    dataset = load_dataset(name, data_dir=args.data_dir)
    split = few_shot_split(dataset, k=args.shots, seed=seed)
    config = TrainConfig.for_dataset(name, student=args.student, seed=seed)
    model_dir = train_student(split.seeds, dataset.labels, config, out / "student",
                              provenance={"seeds": len(split.seeds), "augmented": 0, "shots": args.shots})
    meta = {"dataset": name, "seed": seed, "shots": args.shots, "split": "test", "student": args.student}
    return evaluate_model(model_dir, split.test, out / "eval", meta=meta)


def summarise(reports: list[dict]) -> dict:
    acc, f1 = [r["accuracy"] for r in reports], [r["macro_f1"] for r in reports]
    return {"accuracy_mean": statistics.mean(acc), "accuracy_std": _std(acc), "macro_f1_mean": statistics.mean(f1),
            "macro_f1_std": _std(f1), "accuracy_per_seed": acc, "macro_f1_per_seed": f1,
            "seeds": [r["seed"] for r in reports], "n_test": reports[0]["n"],
            "majority_class_accuracy": max(c["support"] for c in reports[0]["per_class"].values()) / reports[0]["n"]}


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0  # sample standard deviation (n - 1)


def write_results(table: dict[str, dict], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    configs = {name: vars(TrainConfig.for_dataset(name, student=args.student)) for name in table}
    for config in configs.values():
        config.pop("seed")  # each run trains with its own split seed
    settings = {"shots": args.shots, "student": args.student, "seeds": args.seeds, "config": configs}
    (RESULTS / "baseline_2shot.json").write_text(json.dumps({"settings": settings, "results": table}, indent=2) + "\n")
    lines = [f"# {args.shots}-shot baseline: student trained on the seeds only", "",
             f"Student {args.student}, seeds {args.seeds} (each its own few-shot split and training seed), "
             "authors' student defaults (5 epochs, batch 8, lr 4e-5, Banking77 lr 6e-5 and weight decay 0.001, "
             "warmup 0.1, max length 50). Test split, mean ± sample standard deviation over seeds.", "",
             "| dataset | classes x shots | test size | accuracy | macro-F1 | accuracy per seed | majority class |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name, s in table.items():
        per_seed = ", ".join(f"{a:.4f}" for a in s["accuracy_per_seed"])
        lines.append(f"| {name} | {s['classes']} x {args.shots} | {s['n_test']} | {100 * s['accuracy_mean']:.1f} ± "
                     f"{100 * s['accuracy_std']:.1f} | {100 * s['macro_f1_mean']:.1f} ± {100 * s['macro_f1_std']:.1f} "
                     f"| {per_seed} | {100 * s['majority_class_accuracy']:.1f} |")
    lines += ["", "Majority class: the test accuracy of always answering the most frequent test class, for scale.",
              "", "Reproduce: `python evals/baseline_2shot.py --data-dir ../shared/data`"]
    (RESULTS / "baseline_2shot.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding the datasets (else PROMPTMIX_DATA_DIR)")
    parser.add_argument("--out", default="runs/baseline_2shot", help="where the students and reports go")
    parser.add_argument("--datasets", nargs="+", default=list(BUILTIN_DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--student", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    table = {}
    for name in args.datasets:
        reports = [run_one(name, seed, args) for seed in args.seeds]
        table[name] = {"classes": len(reports[0]["labels"]), **summarise(reports)}
        print(f"{name}: accuracy {table[name]['accuracy_mean']:.4f} ± {table[name]['accuracy_std']:.4f}, "
              f"macro-F1 {table[name]['macro_f1_mean']:.4f} ± {table[name]['macro_f1_std']:.4f}", flush=True)
    write_results(table, args)


if __name__ == "__main__":
    main()
