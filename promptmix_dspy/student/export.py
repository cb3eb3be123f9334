"""ONNX export of a trained student, and inference on the export without torch.

``export_onnx`` traces the fine-tuned model to ``model.onnx`` (dynamic batch and length), optionally adds a
dynamically quantised ``model.int8.onnx`` (int8 weights, onnxruntime), copies the tokenizer, the label map and
the trainer's record, and checks the export against torch on texts given to it: the share of equal argmax
labels and the largest difference of a class probability. The record lands in ``onnx_export.json`` and on
the model card.

``OnnxStudent`` needs only onnxruntime, tokenizers and numpy: ``promptmix predict --format onnx`` never imports
torch, which is the point of exporting.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["EXPORT_FILE", "OnnxStudent", "export_onnx", "load_onnx_student", "onnx_file", "predict_onnx"]

logger = logging.getLogger(__name__)

EXPORT_FILE = "onnx_export.json"
OPSET = 17
_COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
           "train_config.json")  # not evaluations.json: those figures are the torch model's


def export_onnx(model_dir: str | Path, out_dir: str | Path, quantize: str | None = None,
                check_texts: Sequence[str] = (), batch_size: int = 64) -> dict[str, Any]:
    """Export a saved student to out_dir as ONNX; returns the export record (also written to onnx_export.json)."""
    import torch

    from promptmix_dspy.student.card import write_card
    from promptmix_dspy.student.model import load_student

    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize must be int8 (or not given), got {quantize!r}")
    model_dir, out = Path(model_dir), Path(out_dir)
    if out.resolve() == model_dir.resolve():
        raise ValueError(f"export to a folder other than the model's own ({model_dir})")
    student = load_student(model_dir, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    sample = student.tokenizer(["a first short text", "a second, somewhat longer text to trace with"],
                               padding=True, return_tensors="pt")
    started = time.perf_counter()
    fp32 = out / "model.onnx"
    with torch.inference_mode():
        torch.onnx.export(student.model, (sample["input_ids"], sample["attention_mask"]), str(fp32),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                        "attention_mask": {0: "batch", 1: "length"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    final = fp32
    if quantize == "int8":
        final = out / "model.int8.onnx"
        _quantize(fp32, final, student.model.config)
    for name in _COPIED:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    record = {"source": str(model_dir), "file": final.name, "fp32_file": fp32.name, "opset": OPSET,
              "quantize": quantize, "bytes": final.stat().st_size, "fp32_bytes": fp32.stat().st_size,
              "max_length": student.max_length, "labels": student.labels,
              "export_seconds": round(time.perf_counter() - started, 2)}
    record["check"] = compare(student, load_onnx_student(out, final.name), check_texts, batch_size)
    if final != fp32:
        record["check_fp32"] = compare(student, load_onnx_student(out, fp32.name), check_texts, batch_size)
    (out / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if (out / "train_config.json").is_file():
        write_card(out, export=record)
    logger.info("exported %s -> %s (%.1f MB); argmax agreement %.4f on %d texts", model_dir, final,
                record["bytes"] / 1e6, record["check"]["argmax_agreement"], record["check"]["n"])
    return record


def _quantize(fp32: Path, final: Path, config: Any) -> None:
    """Fuse BERT's attention, LayerNorm and GELU (onnxruntime's transformer optimizer), then int8 weights per
    output channel: per-tensor int8 cost TREC6 two points, per channel none (benchmarks/predict_bench.py)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fused = final.with_name("model.fused.onnx")
    try:
        from onnxruntime.transformers import optimizer

        model = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size, opt_level=1)
        model.save_model_to_file(str(fused))
    except Exception as exc:  # a model the fusions do not know: quantize it unfused
        logger.warning("transformer fusions skipped (%s); quantizing the plain export", exc)
        shutil.copy2(fp32, fused)
    quantize_dynamic(str(fused), str(final), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fused.unlink()


def compare(student: Any, onnx: "OnnxStudent", texts: Sequence[str], batch_size: int = 64) -> dict[str, Any]:
    """Argmax agreement and the largest class-probability difference between torch and ONNX on texts."""
    import numpy as np

    from promptmix_dspy.student.model import probabilities

    texts = list(texts) or ["a text to check the export with", "another one, a little longer than the first"]
    torch_probs = np.asarray(probabilities(student, texts, batch_size))
    onnx_probs = np.asarray(onnx.probabilities(texts, batch_size))
    same = (torch_probs.argmax(-1) == onnx_probs.argmax(-1)).mean()
    return {"n": len(texts), "argmax_agreement": round(float(same), 6),
            "max_prob_diff": round(float(np.abs(torch_probs - onnx_probs).max()), 6)}


def onnx_file(model_dir: str | Path) -> str:
    """The ONNX file an exported folder serves: the one onnx_export.json names, else int8, else fp32."""
    model_dir = Path(model_dir)
    record = model_dir / EXPORT_FILE
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))["file"]
    for name in ("model.int8.onnx", "model.onnx"):
        if (model_dir / name).is_file():
            return name
    raise FileNotFoundError(f"{model_dir} has no model.onnx: export it first (promptmix export --model DIR "
                            f"--format onnx --out {model_dir})")


@dataclass
class OnnxStudent:
    """An exported student: an onnxruntime session, a ``tokenizers`` tokenizer, the labels, the max length."""

    session: Any
    tokenizer: Any
    labels: list[str]
    max_length: int

    def probabilities(self, texts: Sequence[str], batch_size: int = 64) -> list[list[float]]:
        import numpy as np

        encoded = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        out: list[Any] = [None] * len(encoded)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = max(len(encoded[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                ids[row, :len(encoded[i].ids)] = encoded[i].ids
                mask[row, :len(encoded[i].ids)] = 1
            logits = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
            logits = logits - logits.max(-1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            for row, i in enumerate(chunk):
                out[i] = probs[row].tolist()
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        return [self.labels[max(range(len(p)), key=p.__getitem__)] for p in self.probabilities(texts, batch_size)]


def load_onnx_student(model_dir: str | Path, file: str | None = None, threads: int | None = None) -> OnnxStudent:
    """Load an exported folder with onnxruntime and tokenizers only (no torch, no transformers)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    file = file or onnx_file(model_dir)
    if not (model_dir / file).is_file():
        raise FileNotFoundError(f"{model_dir / file} does not exist")
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no tokenizer.json: the export copies it from the student folder")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    record = model_dir / "train_config.json"
    max_length = json.loads(record.read_text())["config"]["max_length"] if record.is_file() else 512
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_dir / file), options, providers=["CPUExecutionProvider"])
    return OnnxStudent(session, tokenizer, labels, max_length)


def predict_onnx(model_dir: str | Path | OnnxStudent, texts: Sequence[str], batch_size: int = 64) -> list[str]:
    from promptmix_dspy.student.model import _check_texts

    _check_texts(texts, batch_size)
    student = model_dir if isinstance(model_dir, OnnxStudent) else load_onnx_student(model_dir)
    return student.predict(texts, batch_size) if texts else []
