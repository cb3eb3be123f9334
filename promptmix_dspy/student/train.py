"""The student trainer: fine-tune a BERT-family classifier on seeds + augmented rows and save it.

One visible training loop (nanoGPT style) driven by ``accelerate.Accelerator``: CPU, one GPU with bf16/fp16
autocast, or several GPUs (``accelerate launch -m promptmix_dspy.cli train ...``). Batches are padded to their
longest row and grouped by length (seeded), so little compute goes to padding. torch/transformers are imported
inside functions only.
The saved folder reloads with plain ``AutoModelForSequenceClassification.from_pretrained``; loading it and
predicting with it live in student.py.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from promptmix_dspy.data.datasets import read_jsonl
from promptmix_dspy.data.types import DataError, Example
from promptmix_dspy.student.card import EVALUATIONS_FILE, write_card
from promptmix_dspy.student.model import (
    CONFIG_FILE,
    DEFAULT_STUDENT,
    LengthGroupedBatches,
    collate,
    encode,
    pad_id,
    resolve_student,
)

__all__ = ["DATASET_DEFAULTS", "RunSeeds", "TrainConfig", "check_rows", "read_labels", "read_rows", "read_run",
           "train_student"]

logger = logging.getLogger(__name__)

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {"banking77": {"lr": 6e-5, "weight_decay": 0.001}}
PRECISIONS = ("auto", "bf16", "fp16", "no")
TARGETS = ("hard", "soft")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Student hyper-parameters; defaults are those of the authors' code (DistilBERT there, MiniLM here)."""

    student: str = DEFAULT_STUDENT
    epochs: int = 5
    # Train longer than ``epochs`` when they give fewer optimizer steps (0: never). On 2 seeds per class and a
    # few dozen generated rows the authors' 5 epochs are ~45 steps and MiniLM stays near its first guess (one
    # class for every test text); 300 reaches a training loss near 0.1 there (chosen on the training loss alone).
    min_steps: int = 300
    # How a row with class probabilities (a relabeled text) is trained on: "hard" (its label), "soft" (the
    # probabilities as the target distribution). Rows without probabilities (seeds) are always one-hot.
    targets: str = "hard"
    min_confidence: float = 0.0  # rows with probabilities whose label's probability is below this are left out
    batch_size: int = 8
    lr: float = 4e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 50
    seed: int = 0
    grad_clip: float = 1.0
    group_by_length: bool = True
    precision: str = "auto"  # auto = bf16 on CUDA when supported, else fp16 on CUDA, else fp32 (no)
    device: str = "auto"

    def __post_init__(self) -> None:
        rules = [("epochs", self.epochs >= 1, ">= 1"), ("min_steps", self.min_steps >= 0, ">= 0"),
                 ("batch_size", self.batch_size >= 1, ">= 1"),
                 ("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                 ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
                 ("max_length", 2 <= self.max_length <= 512, "in [2, 512]"),
                 ("grad_clip", self.grad_clip > 0, "> 0"), ("precision", self.precision in PRECISIONS,
                 f"one of {PRECISIONS}"), ("device", self.device in DEVICES, f"one of {DEVICES}"),
                 ("student", bool(str(self.student).strip()), "a hub name or a local directory"),
                 ("targets", self.targets in TARGETS, f"one of {TARGETS}"),
                 ("min_confidence", 0.0 <= self.min_confidence < 1.0, "in [0, 1)")]
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")

    def epochs_for(self, batches_per_epoch: int) -> int:
        """``epochs``, or more when ``min_steps`` asks for more optimizer steps than they give: on a tiny training
        set (2 seeds per class and a few generated texts) 5 epochs are a few dozen steps, and the student barely
        leaves its initial guess; every method then gets at least the same number of steps."""
        if not self.min_steps:
            return self.epochs
        return max(self.epochs, math.ceil(self.min_steps / max(1, batches_per_epoch)))

    @classmethod
    def for_dataset(cls, dataset: str | None, **overrides: Any) -> "TrainConfig":
        """The defaults for a dataset (Banking77 has its own lr and weight decay); None overrides are ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        values = dict(DATASET_DEFAULTS.get(dataset or "", {}))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# ----------------------------------------------------------------------------------------------------------
# Training rows


def read_rows(path: str | Path, labels: Sequence[str], label_field: str = "label") -> list[Example]:
    """Read {"text", <label_field>} rows from a jsonl file; a bad row names the file, the line and the value."""
    path, known, rows = Path(path), set(labels), []
    if not path.is_file():
        raise DataError(f"training file {path} does not exist")
    for line, obj in read_jsonl(path):
        text, label = obj.get("text"), obj.get(label_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{line}: field 'text' must be a non-empty string, got {text!r}")
        if label not in known:
            raise DataError(f"{path}:{line}: {label_field} {label!r} is not a label this student is built for "
                            f"({list(labels)})")
        probs = _probs(obj.get("probs"), known, f"{path}:{line}") if label_field == "label" else None
        rows.append(Example(text, str(label), probs))
    return rows


def _probs(value: Any, known: set[str], where: str) -> tuple[tuple[str, float], ...] | None:
    """A row's class probabilities ({label: p}), checked: known labels, values in [0, 1] summing to 1."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise DataError(f"{where}: field 'probs' must be an object of label: probability, got {value!r}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise DataError(f"{where}: 'probs' names label(s) {unknown} this student is not built for")
    if not all(isinstance(p, (int, float)) and 0.0 <= p <= 1.0 for p in value.values()) \
            or abs(sum(value.values()) - 1.0) > 1e-3:
        raise DataError(f"{where}: 'probs' must be probabilities in [0, 1] summing to 1, got {value!r}")
    return tuple((k, float(v)) for k, v in value.items())


@dataclass
class RunSeeds:
    """What a run folder says about the seeds: the examples, the ordered labels, the dataset name."""

    seeds: list[Example]
    labels: list[str]
    dataset: str | None


def read_run(run_dir: str | Path) -> RunSeeds:
    """Read seeds.jsonl, labels.json and config.json (for the dataset name) from an augment run folder."""
    run = Path(run_dir)
    for name in ("seeds.jsonl", "labels.json"):
        if not (run / name).is_file():
            raise DataError(f"run folder {run}: {name} is missing (is it an augment run folder?)")
    labels = read_labels(run / "labels.json")
    config = json.loads((run / "config.json").read_text(encoding="utf-8")) if (run / "config.json").is_file() else {}
    return RunSeeds(read_rows(run / "seeds.jsonl", labels), labels, config.get("dataset"))


def read_labels(path: str | Path) -> list[str]:
    """The ordered label names from a labels.json (a JSON list of strings)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    labels = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{path}: must be a JSON list of label-name strings")
    return labels


def check_rows(rows: Sequence[Example], labels: Sequence[str], where: str = "training rows") -> None:
    """Raise DataError for an empty set, fewer than 2 labels, duplicate labels, empty text or an unknown label."""
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise DataError(f"{where}: a student needs at least 2 distinct labels, got {list(labels)}")
    if not rows:
        raise DataError(f"{where}: no examples to train on")
    known = set(labels)
    for i, ex in enumerate(rows, start=1):
        if not isinstance(ex.text, str) or not ex.text.strip():
            raise DataError(f"{where}, row {i}: empty text")
        if ex.label not in known:
            raise DataError(f"{where}, row {i}: label {ex.label!r} is not one of {list(labels)}")


# ----------------------------------------------------------------------------------------------------------
# Training


def train_student(rows: Sequence[Example], labels: Sequence[str], config: TrainConfig | None = None,
                  out_dir: str | Path = "student", provenance: dict[str, Any] | None = None) -> Path:
    """Fine-tune ``config.student`` on rows; save weights, tokenizer, label map, train_config.json and the model card."""
    import torch
    from accelerate import Accelerator

    config, labels = config or TrainConfig(), list(labels)
    check_rows(rows, labels)
    rows, left_out = select_rows(rows, config)
    accelerator = Accelerator(cpu=_wants_cpu(config), mixed_precision=_mixed_precision(config))
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # seeds head init and dropout, leaves the caller's RNG alone
        torch.manual_seed(config.seed)
        model, tokenizer = _load_base(config.student, labels)
        loader = _loader(tokenizer, rows, labels, config)
        started, cpu_started = time.perf_counter(), time.process_time()
        model, losses = _fit(model, loader, config, accelerator)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    stats = {"epoch_losses": losses, "train_seconds": round(seconds, 3), "train_cpu_seconds": round(cpu_seconds, 3),
             "device": str(accelerator.device),
             "mixed_precision": accelerator.mixed_precision, "processes": accelerator.num_processes,
             "epochs": len(losses), "samples_per_second": round(len(rows) * len(losses) / seconds, 2)}
    record = _record(config, labels, rows, {**(provenance or {}), "left_out_below_min_confidence": left_out},
                     stats)
    path = _save(model, tokenizer, Path(out_dir), record, accelerator)
    accelerator.free_memory()  # drop accelerate's references, so repeated runs in one process do not pile up
    return path


def select_rows(rows: Sequence[Example], config: TrainConfig) -> tuple[list[Example], int]:
    """The rows to train on: those with probabilities below ``min_confidence`` left out (seeds always stay)."""
    kept = [r for r in rows if r.probs is None or r.confidence >= config.min_confidence]
    if not kept:
        raise DataError(f"min_confidence {config.min_confidence} leaves no row to train on")
    return kept, len(rows) - len(kept)


def target_matrix(rows: Sequence[Example], labels: list[str], targets: str) -> list[list[float]]:
    """One target distribution per row: one-hot on its label, or its probabilities when ``targets`` is soft and
    it has them (over the student's labels; a class the probabilities leave out gets 0)."""
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for row in rows:
        target = [0.0] * len(labels)
        if targets == "soft" and row.probs:
            total = sum(p for _, p in row.probs)
            for label, p in row.probs:
                target[index[label]] = p / total
        else:
            target[index[row.label]] = 1.0
        out.append(target)
    return out


def soft_cross_entropy(logits: Any, targets: Any) -> Any:
    """Mean over the batch of -sum_c q_c log p_c: cross-entropy against a target distribution q (equal to the
    usual loss for one-hot q; its gradient pulls p toward q, not toward the argmax)."""
    import torch

    return -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def _fit(model: Any, loader: Any, config: TrainConfig, accelerator: Any) -> tuple[Any, list[float]]:
    """The training loop. Returns the unwrapped model and the mean loss of each epoch."""
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    optimizer = _optimizer(model, config, accelerator.device)
    epochs = config.epochs_for(len(loader))
    total = epochs * len(loader)  # counted before sharding: accelerate steps the schedule per process
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    model.train()
    bar = tqdm(total=total, desc="train", disable=not accelerator.is_local_main_process)
    losses: list[float] = []
    for epoch in range(epochs):
        running = torch.zeros((), device=accelerator.device)  # summed on device: no host sync per step
        for batch in loader:
            targets = batch.pop("targets")
            loss = soft_cross_entropy(model(**batch).logits, targets)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.detach()
            bar.update(1)
        losses.append(accelerator.reduce(running, reduction="mean").item() / len(loader))
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
        logger.info("epoch %d/%d: mean loss %.4f", epoch + 1, epochs, losses[-1])
    bar.close()
    return accelerator.unwrap_model(model), losses


def _optimizer(model: Any, config: TrainConfig, device: Any) -> Any:
    """AdamW; matrices decay, biases and LayerNorm gains do not (as in transformers.Trainer)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, fused=device.type in ("cuda", "cpu"))


def _loader(tokenizer: Any, rows: Sequence[Example], labels: list[str], config: TrainConfig) -> Any:
    from torch.utils.data import DataLoader

    ids = encode(tokenizer, [r.text for r in rows], config.max_length)
    targets = target_matrix(rows, labels, config.targets)
    data = [{"input_ids": x, "targets": t} for x, t in zip(ids, targets)]
    sampler = LengthGroupedBatches([len(x) for x in ids], config.batch_size, config.seed, config.group_by_length)
    return DataLoader(data, batch_sampler=sampler, collate_fn=partial(collate, pad=pad_id(tokenizer)))


def _wants_cpu(config: TrainConfig) -> bool:
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device is 'cuda' but torch sees no CUDA device")
    return config.device == "cpu" or not torch.cuda.is_available()


def _mixed_precision(config: TrainConfig) -> str:
    import torch

    if _wants_cpu(config):
        return "no"
    if config.precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return config.precision


# ----------------------------------------------------------------------------------------------------------
# Loading and saving


def _load_base(name: str, labels: list[str]) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_student(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, ignore_mismatched_sizes=True)
    except OSError as exc:
        raise FileNotFoundError(f"student {name!r} is neither a local model directory nor a model the hub "
                                f"could provide (offline? HF_HUB_OFFLINE set?): {exc}") from exc
    return model, tokenizer


def _record(config: TrainConfig, labels: list[str], rows: Sequence[Example], provenance: dict[str, Any],
            stats: dict[str, Any]) -> dict[str, Any]:
    counts = {label: 0 for label in labels}
    for ex in rows:
        counts[ex.label] += 1
    return {"config": asdict(config), "student_source": resolve_student(config.student), "labels": labels,
            "data": {"rows": len(rows), "per_label": counts, **provenance}, "stats": stats,
            "versions": _versions()}


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("promptmix-dspy", "torch", "transformers", "accelerate", "tokenizers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _save(model: Any, tokenizer: Any, out: Path, record: dict[str, Any], accelerator: Any) -> Path:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)  # safetensors, config.json with id2label/label2id
        tokenizer.save_pretrained(out)
        (out / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        (out / EVALUATIONS_FILE).unlink(missing_ok=True)  # a retrained folder's old figures are not this model's
        write_card(out)
        logger.info("saved the student to %s", out)
    accelerator.wait_for_everyone()
    return out
