"""Serving speed of a student: torch fp32 against its ONNX export (fp32 and int8), and against the LLM teacher.

For each format and batch size (1, 8, 64) it labels the whole TREC6 test split, best of --repeats passes,
and prints texts/s (wall) and texts per CPU-second (process CPU time: steadier on a shared machine), the
accuracy on that split, and the size on disk. The teacher's rate comes from a finished `llm` cell of a
benchmark grid on this machine (its result.json: test texts classified / wall seconds), or --teacher-rate.

    python benchmarks/predict_bench.py --data-dir ../shared/data --model runs/bench_qwen/cells/trec6/a2/seed0/student
    python benchmarks/predict_bench.py --data-dir ../shared/data   # trains a reference student on 1024 train rows

Writes --out (default evals/results/predict_bench.md) with the same table.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

BATCHES = (1, 8, 64)
DEFAULT_TEACHER = Path("runs/bench_qwen/cells/trec6/llm/seed0/result.json")


def _size_mb(folder: Path, names: tuple[str, ...]) -> float:
    return sum((folder / n).stat().st_size for n in names if (folder / n).is_file()) / 1e6


def _timed(fn, texts: list[str], batch: int, repeats: int) -> tuple[float, float, list[str]]:
    best_wall = best_cpu = float("inf")
    labels: list[str] = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        labels = fn(texts, batch)
        best_wall, best_cpu = min(best_wall, time.perf_counter() - wall), min(best_cpu, time.process_time() - cpu)
    return len(texts) / best_wall, len(texts) / best_cpu, labels


def _reference_student(data_dir: str, out: Path) -> Path:
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.student.train import TrainConfig, train_student

    dataset = load_dataset("trec6", data_dir=data_dir)
    rows = random.Random(0).sample(dataset.train, 1024)
    return train_student(rows, dataset.labels, TrainConfig(epochs=2, seed=0), out / "student",
                         {"dataset": "trec6", "method": "reference: 1024 real train rows"})


def _teacher_rate(args: argparse.Namespace) -> tuple[float | None, str]:
    if args.teacher_rate:
        return args.teacher_rate, "given with --teacher-rate"
    path = Path(args.teacher_result)
    if not path.is_file():
        return None, f"no {path}: run the grid's llm cell or pass --teacher-rate"
    result = json.loads(path.read_text())
    return result["n_test"] / result["seconds"]["teacher"], f"{path} ({result['lm']['model']}, {result['n_test']} texts)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default=None, help="A trained student folder (default: train a reference one).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--teacher-result", default=str(DEFAULT_TEACHER))
    parser.add_argument("--teacher-rate", type=float, default=None, help="Teacher classifications/s, if known.")
    parser.add_argument("--out", default="evals/results/predict_bench.md")
    args = parser.parse_args()

    import torch

    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.student.export import export_onnx, load_onnx_student
    from promptmix_dspy.student.model import load_student, predict

    torch.set_num_threads(args.threads)
    test = load_dataset("trec6", data_dir=args.data_dir).test
    texts, gold = [ex.text for ex in test], [ex.label for ex in test]
    work = Path(tempfile.mkdtemp(prefix="predict-bench-"))
    model = Path(args.model) if args.model else _reference_student(args.data_dir, work)
    exports = {"fp32": export_onnx(model, work / "onnx", check_texts=texts),
               "int8": export_onnx(model, work / "onnx-int8", "int8", check_texts=texts)}
    student = load_student(model, device="cpu")
    onnx = {q: load_onnx_student(work / ("onnx" if q == "fp32" else "onnx-int8"), threads=args.threads)
            for q in exports}
    variants = {
        "torch fp32": (lambda t, b: predict(student, t, batch_size=b), _size_mb(model, ("model.safetensors",))),
        "ONNX fp32": (lambda t, b: onnx["fp32"].predict(t, b), exports["fp32"]["bytes"] / 1e6),
        "ONNX int8": (lambda t, b: onnx["int8"].predict(t, b), exports["int8"]["bytes"] / 1e6),
    }
    for fn, _ in variants.values():
        fn(texts[:64], 64)  # warm-up
    rows, rates = [], {}
    for name, (fn, size) in variants.items():
        cells, accuracy = [], None
        for batch in BATCHES:
            wall, cpu, labels = _timed(fn, texts, batch, args.repeats)
            rates[(name, batch)] = wall
            accuracy = sum(p == g for p, g in zip(labels, gold)) / len(gold)
            cells.append(f"{wall:,.0f} ({cpu:,.0f})")
        rows.append(f"| {name} | {' | '.join(cells)} | {accuracy:.2%} | {size:.1f} |")
        print(rows[-1], flush=True)
    teacher, source = _teacher_rate(args)
    speedup = rates[("ONNX int8", 64)] / rates[("torch fp32", 64)]
    lines = [f"# Student serving speed ({model})", "",
             f"TREC6 test, {len(texts)} texts, {args.threads} threads, best of {args.repeats}; texts/s wall "
             "(texts per CPU-second)", "",
             "| format | batch 1 | batch 8 | batch 64 | accuracy | MB on disk |", "|---|---:|---:|---:|---:|---:|",
             *rows, "", f"- ONNX int8 / torch fp32 at batch 64: {speedup:.1f}x",
             f"- export agreement with torch on the check texts: fp32 {exports['fp32']['check']['argmax_agreement']:.2%}, "
             f"int8 {exports['int8']['check']['argmax_agreement']:.2%}"]
    if teacher:
        lines.append(f"- teacher: {teacher:.2f} classifications/s ({source}); ONNX int8 at batch 64 is "
                     f"{rates[('ONNX int8', 64)] / teacher:,.0f}x, torch fp32 at batch 1 "
                     f"{rates[('torch fp32', 1)] / teacher:,.0f}x")
    else:
        lines.append(f"- teacher: {source}")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
