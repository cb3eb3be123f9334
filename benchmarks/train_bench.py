"""Training speed and peak memory of our trainer against a plain transformers.Trainer, and inference speed.

Same data (a seeded sample of TREC6 train), same student, same settings (batch 8, lr 4e-5, weight decay 0.01,
linear warmup 0.1, max length 50, grad clip 1.0, 1 epoch). Each variant runs in its own subprocess, so peak
memory (max RSS on CPU, torch's peak allocation on CUDA) belongs to that variant alone. Samples per CPU-second
(process CPU time, all threads) is printed too: on a shared machine it is steadier than wall-clock speed. Variants:
  ours            promptmix_dspy.student.train.train_student (length-grouped batches, dynamic padding)
  trainer         transformers.Trainer with its defaults (random batches, dynamic padding)
  trainer+group   transformers.Trainer with length-grouped sampling, for reference
Inference: promptmix_dspy.student.model.predict at batch 64 over the TREC6 test split, on ours' saved model.

    python benchmarks/train_bench.py --data-dir ../shared/data [--rows 1024] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("ours", "trainer", "trainer+group")
SETTINGS = {"batch_size": 8, "lr": 4e-5, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_length": 50, "seed": 0}


def _rows(args: argparse.Namespace) -> tuple[list, list[str], list]:
    from promptmix_dspy.data.datasets import load_dataset

    dataset = load_dataset("trec6", data_dir=args.data_dir)
    return random.Random(0).sample(dataset.train, args.rows), dataset.labels, dataset.test


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_ours(args: argparse.Namespace, out: Path) -> dict:
    from promptmix_dspy.student.model import load_student, predict
    from promptmix_dspy.student.train import TrainConfig, train_student

    rows, labels, test = _rows(args)
    config = TrainConfig(student=args.student, epochs=args.epochs, device=args.device, **SETTINGS)
    model_dir = train_student(rows, labels, config, out / "ours")
    stats = json.loads((model_dir / "train_config.json").read_text())["stats"]
    result = {"samples_per_second": stats["samples_per_second"], "peak_memory_mb": _peak_memory_mb(args.device),
              "samples_per_cpu_second": len(rows) * args.epochs / stats["train_cpu_seconds"]}
    student = load_student(model_dir, device=args.device)
    texts = [ex.text for ex in test]
    predict(student, texts[:64], batch_size=64)  # warm-up
    started = time.perf_counter()
    predict(student, texts, batch_size=64)
    result["inference_texts_per_second"] = len(texts) / (time.perf_counter() - started)
    return result


def run_trainer(args: argparse.Namespace, out: Path, group: bool) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from promptmix_dspy.student.model import resolve_student

    rows, labels, _ = _rows(args)
    source = resolve_student(args.student)
    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(SETTINGS["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(labels))
    ids = tokenizer([r.text for r in rows], truncation=True, max_length=SETTINGS["max_length"])["input_ids"]
    data = [{"input_ids": x, "labels": labels.index(r.label)} for x, r in zip(ids, rows)]
    targs = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=SETTINGS["batch_size"],
        num_train_epochs=args.epochs, learning_rate=SETTINGS["lr"], weight_decay=SETTINGS["weight_decay"],
        lr_scheduler_type="linear", max_grad_norm=1.0, seed=SETTINGS["seed"], save_strategy="no",
        report_to="none", logging_strategy="no", disable_tqdm=True, use_cpu=args.device == "cpu",
        bf16=args.device == "cuda" and torch.cuda.is_bf16_supported(), **_version_specific(group))
    trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"samples_per_second": len(rows) * args.epochs / seconds, "peak_memory_mb": _peak_memory_mb(args.device),
            "samples_per_cpu_second": len(rows) * args.epochs / cpu_seconds}


def _version_specific(group: bool) -> dict:
    """transformers 5 renamed warmup_ratio (a float warmup_steps now) and group_by_length."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"warmup_steps": SETTINGS["warmup_ratio"],
                "train_sampling_strategy": "group_by_length" if group else "random"}
    return {"warmup_ratio": SETTINGS["warmup_ratio"], "group_by_length": group}


def child(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only == "ours":
            result = run_ours(args, Path(tmp))
        else:
            result = run_trainer(args, Path(tmp), group=args.only == "trainer+group")
    print("RESULT " + json.dumps(result), flush=True)


def parent(args: argparse.Namespace) -> None:
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:  # interleaved, so drift in machine load hits every variant alike
            results[variant].append(_spawn(args, variant))
    _print(args, results)
    _print_padding(args)


def _print_padding(args: argparse.Namespace) -> None:
    """Tokens the model runs over in one epoch, padding included: load-independent, it explains the speed."""
    from transformers import AutoTokenizer

    from promptmix_dspy.student.model import LengthGroupedBatches, resolve_student

    rows, _, _ = _rows(args)
    tokenizer = AutoTokenizer.from_pretrained(resolve_student(args.student))
    lengths = [len(x) for x in tokenizer([r.text for r in rows], truncation=True, max_length=50)["input_ids"]]
    for name, group in (("length-grouped (ours)", True), ("random (plain Trainer)", False)):
        batches = list(LengthGroupedBatches(lengths, SETTINGS["batch_size"], seed=0, group=group))
        padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        print(f"tokens per epoch, {name}: {padded} ({padded / sum(lengths) - 1:.0%} padding)")


def _spawn(args: argparse.Namespace, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--only", variant, "--rows", str(args.rows), "--epochs", str(args.epochs),
           "--student", args.student, "--device", args.device, "--threads", str(args.threads)]
    cmd += ["--data-dir", args.data_dir] if args.data_dir else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _print(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    import torch

    threads = args.threads or torch.get_num_threads()
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {threads} threads"
    print(f"\nstudent {args.student}, {args.rows} TREC6 rows x {args.epochs} epoch(s), batch 8, max length 50, "
          f"{device}, median of {args.repeats}")
    print(f"{'variant':<15}{'train samples/s':>17}{'samples/CPU-s':>15}{'peak memory MB':>16}")
    for variant, runs in results.items():
        speed = statistics.median(r["samples_per_second"] for r in runs)
        per_cpu = statistics.median(r["samples_per_cpu_second"] for r in runs)
        memory = statistics.median(r["peak_memory_mb"] for r in runs)
        print(f"{variant:<15}{speed:>17.1f}{per_cpu:>15.1f}{memory:>16.0f}")
    ours = statistics.median(r["samples_per_second"] for r in results["ours"])
    plain = statistics.median(r["samples_per_second"] for r in results["trainer"])
    inference = statistics.median(r["inference_texts_per_second"] for r in results["ours"])
    print(f"ours / plain Trainer speed: {ours / plain:.2f}x")
    print(f"inference at batch 64 (TREC6 test, 500 texts): {inference:.0f} texts/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("PROMPTMIX_DATA_DIR"))
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--student", default="all-MiniLM-L6-v2")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(args) if args.only else parent(args)


if __name__ == "__main__":
    main()
