"""``promptmix train``, ``predict`` and ``evaluate``: the student, separate from the LLM side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from promptmix_dspy.cli.common import guarded, setup_logging
from promptmix_dspy.cli.options import DataOptions, Seed, Verbose, given, with_groups

__all__ = ["evaluate", "export", "predict", "train"]

ModelDir = Annotated[Path, typer.Option("--model", help="A trained student folder.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")]


@dataclass
class TrainOptions:
    """The student's hyper-parameters; anything not given keeps the dataset's default (DESIGN.md)."""

    student: Annotated[Optional[str], typer.Option("--student", help="Hub name or local model folder (default "
                                                   "all-MiniLM-L6-v2, packaged).")] = None
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Default 5.")] = None
    min_steps: Annotated[Optional[int], typer.Option("--min-steps", min=0, help="Train for at least this many "
                         "optimizer steps, more epochs if needed (default 300: on 2 seeds per class and a few "
                         "dozen generated rows 5 epochs are ~45 steps and the student predicts one class); 0: "
                         "exactly --epochs.")] = None
    targets: Annotated[Optional[str], typer.Option("--targets", help="hard (default): train on each row's label; "
                       "soft: on the class probabilities of rows that carry them (a relabeled augmented.jsonl).")] = None
    min_confidence: Annotated[Optional[float], typer.Option("--min-confidence", help="Leave out rows whose label's "
                              "probability is below this (rows without probabilities stay; default 0).")] = None
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Default 8.")] = None
    lr: Annotated[Optional[float], typer.Option("--lr", help="Default 4e-5 (6e-5 on banking77).")] = None
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="Default 0.01 (0.001 on "
                                                          "banking77).")] = None
    warmup_ratio: Annotated[Optional[float], typer.Option("--warmup-ratio", help="Default 0.1.")] = None
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Default 50 tokens.")] = None
    device: Annotated[Optional[str], typer.Option("--device", help="auto (default), cpu or cuda.")] = None
    precision: Annotated[Optional[str], typer.Option("--precision", help="auto (default), bf16, fp16 or no "
                                                     "(CUDA only).")] = None


@dataclass
class TrainingData:
    """What the student learns from: a run folder's seeds and/or an augmented file."""

    out: Annotated[Path, typer.Option("--out", help="Folder for the trained student.")]
    train_file: Annotated[Optional[Path], typer.Option("--train", help="augmented.jsonl; omit it to train on the "
                                                       "seeds alone (the baseline).")] = None
    seeds_from: Annotated[Optional[Path], typer.Option("--seeds-from", help="Run folder: seeds.jsonl, labels.json, "
                                                       "config.json.")] = None
    labels_file: Annotated[Optional[Path], typer.Option("--labels", help="labels.json, when there is no run "
                                                        "folder.")] = None
    label_field: Annotated[str, typer.Option("--label-field", help="label (relabeled, calibrated), label_raw (the "
                                             "LLM's answers as given) or generated_for (labels as generated: the "
                                             "paper's A1 ablation).")] = "label"
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset whose defaults apply (banking77 has "
                                                   "its own lr); default: the run's config.json.")] = None


@with_groups
def train(data: TrainingData, options: TrainOptions, seed: Seed = None, verbose: Verbose = False) -> None:
    """Fine-tune a student on the seeds plus an augmented file; save weights, tokenizer, labels and config."""
    setup_logging(verbose)
    with guarded():
        from promptmix_dspy.student.train import TrainConfig, train_student

        rows, labels, run_dataset, provenance = _training_set(data)
        if data.dataset or run_dataset:
            provenance["dataset"] = data.dataset or run_dataset
        extra = {"seed": seed} if seed is not None else {}
        config = TrainConfig.for_dataset(data.dataset or run_dataset, **given(options), **extra)
        path = train_student(rows, labels, config, data.out, provenance)
    typer.echo(f"trained on {len(rows)} rows ({provenance['seeds']} seeds + {provenance['augmented']} augmented) "
               f"-> {path}")


def _training_set(data: TrainingData) -> tuple[list, list[str], Optional[str], dict]:
    from promptmix_dspy.student.train import read_labels, read_rows, read_run

    if data.label_field not in ("label", "label_raw", "generated_for"):
        raise ValueError(f"--label-field must be 'label', 'label_raw' or 'generated_for', got {data.label_field!r}")
    if data.seeds_from is None and data.labels_file is None:
        raise ValueError("give --seeds-from RUN_FOLDER (seeds and labels) or --labels labels.json")
    run = read_run(data.seeds_from) if data.seeds_from is not None else None
    labels = run.labels if run else read_labels(data.labels_file)
    seeds = run.seeds if run else []
    augmented = read_rows(data.train_file, labels, data.label_field) if data.train_file is not None else []
    if not seeds and not augmented:
        raise ValueError("nothing to train on: give --seeds-from RUN_FOLDER and/or --train FILE")
    provenance = {"seeds": len(seeds), "augmented": len(augmented), "seeds_from": str(data.seeds_from or ""),
                  "train_file": str(data.train_file or ""), "label_field": data.label_field}
    if data.train_file is not None:
        from promptmix_dspy.student.card import augmented_summary

        provenance["augmented_summary"] = augmented_summary(data.train_file)
    return seeds + augmented, labels, run.dataset if run else None, provenance


Format = Annotated[str, typer.Option("--format", help="torch, onnx, or auto (onnx when the folder is an ONNX "
                                      "export, else torch).")]


@with_groups
def predict(model: ModelDir,
            input_file: Annotated[Path, typer.Option("--input", help=".jsonl with a text field, or .txt with one "
                                                     "text a line.")],
            output: Annotated[Optional[Path], typer.Option("--output", help="Default: "
                                                           "<input>.predictions.jsonl.")] = None,
            batch_size: BatchSize = 64, model_format: Format = "auto", verbose: Verbose = False) -> None:
    """Label texts with a trained student (torch) or its ONNX export (no torch); one {"text", "prediction"} a line."""
    setup_logging(verbose)
    with guarded():
        import json
        import time

        from promptmix_dspy.student.model import read_texts

        texts, kind = read_texts(input_file), _model_format(model, model_format)
        started = time.perf_counter()
        if kind == "onnx":
            from promptmix_dspy.student.export import predict_onnx

            labels = predict_onnx(model, texts, batch_size=batch_size)
        else:
            from promptmix_dspy.student.model import load_student
            from promptmix_dspy.student.model import predict as predict_texts

            labels = predict_texts(load_student(model), texts, batch_size=batch_size)
        seconds = time.perf_counter() - started
        output = output or input_file.with_name(input_file.stem + ".predictions.jsonl")
        output.write_text("".join(json.dumps({"text": t, "prediction": p}, ensure_ascii=False) + "\n"
                                  for t, p in zip(texts, labels)), encoding="utf-8")
    typer.echo(f"{len(texts)} texts in {seconds:.2f} s ({len(texts) / max(seconds, 1e-9):.0f} texts/s, {kind}) "
               f"-> {output}")


def _model_format(model: Path, wanted: str) -> str:
    if wanted not in ("auto", "torch", "onnx"):
        raise ValueError(f"--format must be torch, onnx or auto, got {wanted!r}")
    if wanted != "auto":
        return wanted
    has_onnx = any((model / name).is_file() for name in ("onnx_export.json", "model.onnx", "model.int8.onnx"))
    has_torch = any((model / name).is_file() for name in ("model.safetensors", "pytorch_model.bin"))
    return "onnx" if has_onnx and not has_torch else "torch"


@with_groups
def export(model: ModelDir,
           out: Annotated[Path, typer.Option("--out", help="Folder for the exported model.")],
           export_format: Annotated[str, typer.Option("--format", help="onnx (the one format so far).")] = "onnx",
           quantize: Annotated[Optional[str], typer.Option("--quantize", help="int8: dynamic int8 weights "
                                                           "(about 4x smaller, faster on CPU).")] = None,
           check: Annotated[Optional[Path], typer.Option("--check", help="Texts (.jsonl or .txt) to compare the "
                                                         "export with torch on, e.g. the test split.")] = None,
           batch_size: BatchSize = 64, verbose: Verbose = False) -> None:
    """Export a trained student to ONNX (+ tokenizer, labels, model card) and check it agrees with torch."""
    setup_logging(verbose)
    with guarded():
        from promptmix_dspy.student.export import export_onnx
        from promptmix_dspy.student.model import read_texts

        if export_format != "onnx":
            raise ValueError(f"--format must be onnx, got {export_format!r}")
        texts = read_texts(check) if check is not None else []
        record = export_onnx(model, out, quantize=quantize, check_texts=texts, batch_size=batch_size)
    c = record["check"]
    typer.echo(f"{out / record['file']} ({record['bytes'] / 1e6:.1f} MB): argmax agreement with torch "
               f"{c['argmax_agreement']:.2%} on {c['n']} texts, largest probability difference {c['max_prob_diff']:.4f}")


@with_groups
def evaluate(model: ModelDir, data: DataOptions,
             split: Annotated[str, typer.Option("--split", help="test or train.")] = "test",
             out: Annotated[Optional[Path], typer.Option("--out", help="Default: "
                                                         "<model>/eval-<dataset>-<split>.")] = None,
             batch_size: BatchSize = 64, verbose: Verbose = False) -> None:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix -> report.json, report.md, confusion.png."""
    setup_logging(verbose)
    with guarded():
        from promptmix_dspy.student.evaluate import evaluate_model

        if split not in ("test", "train"):
            raise ValueError(f"--split must be 'test' or 'train', got {split!r}")
        ds = data.load()
        out = out or model / f"eval-{ds.name}-{split}"
        meta = {"model": str(model), "dataset": ds.name, "split": split}
        report = evaluate_model(model, getattr(ds, split), out, batch_size=batch_size, meta=meta)
    typer.echo(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  ({report['n']} examples, "
               f"{report['texts_per_second']:.0f} texts/s) -> {out / 'report.md'}")
