"""The model card: a README.md in every trained student folder, in the Hugging Face card format.

``write_card`` renders it from train_config.json (what the trainer recorded) and evaluations.json (what
``evaluate_model`` added since), so the card is rewritten, never edited: training writes it, each evaluation
and each export rewrites it with what is known by then. The YAML front matter follows the Hub's model-card
metadata (``base_model``, ``pipeline_tag``, ``model-index``), so ``huggingface_hub`` can push the folder as is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "EVALUATIONS_FILE", "augmented_summary", "record_evaluation", "render_card", "write_card"]

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
EVALUATIONS_FILE = "evaluations.json"
_HUB_NAMES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def augmented_summary(path: str | Path) -> dict[str, Any]:
    """What an augmented.jsonl says about its making: the LLMs, the relabel share, the rows per asked class."""
    lms: dict[str, int] = {}
    asked: dict[str, int] = {}
    rows = relabeled = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            obj = json.loads(line)
            rows += 1
            relabeled += bool(obj.get("relabeled"))
            if obj.get("lm"):
                lms[obj["lm"]] = lms.get(obj["lm"], 0) + 1
            if obj.get("generated_for"):
                asked[obj["generated_for"]] = asked.get(obj["generated_for"], 0) + 1
    return {"rows": rows, "lms": sorted(lms), "relabeled": relabeled,
            "relabel_share": round(relabeled / rows, 4) if rows else None, "generated_for": asked}


def record_evaluation(model_dir: str | Path, report: dict[str, Any]) -> None:
    """Keep an evaluation's headline figures beside the weights (one per dataset and split) and redo the card."""
    model_dir = Path(model_dir)
    path = model_dir / EVALUATIONS_FILE
    evaluations = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    key = f"{report.get('dataset', 'data')}/{report.get('split', 'test')}"
    evaluations[key] = {"dataset": report.get("dataset"), "split": report.get("split", "test"), "n": report["n"],
                        "accuracy": round(report["accuracy"], 4), "macro_f1": round(report["macro_f1"], 4),
                        "texts_per_second": report.get("texts_per_second")}
    path.write_text(json.dumps(evaluations, indent=2) + "\n", encoding="utf-8")
    write_card(model_dir)


def write_card(model_dir: str | Path, export: dict[str, Any] | None = None) -> Path:
    """(Re)write model_dir/README.md from train_config.json, evaluations.json and, for an export, its record."""
    from promptmix_dspy.student.model import CONFIG_FILE

    model_dir = Path(model_dir)
    record_path = model_dir / CONFIG_FILE
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} does not exist: the card is made from the trainer's record")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    evals_path = model_dir / EVALUATIONS_FILE
    evaluations = json.loads(evals_path.read_text(encoding="utf-8")) if evals_path.is_file() else {}
    path = model_dir / CARD_FILE
    path.write_text(render_card(record, evaluations, export, name=model_dir.name), encoding="utf-8")
    return path


def render_card(record: dict[str, Any], evaluations: dict[str, Any], export: dict[str, Any] | None = None,
                name: str = "student") -> str:
    return "\n".join(_front_matter(record, evaluations, name) + _body(record, evaluations, export)) + "\n"


def _base_model(record: dict[str, Any]) -> str:
    base = str(record["config"]["student"])
    return _HUB_NAMES.get(base, base)


def _front_matter(record: dict[str, Any], evaluations: dict[str, Any], name: str) -> list[str]:
    data = record.get("data", {})
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             f"base_model: {json.dumps(_base_model(record))}", "tags:", "- text-classification", "- promptmix",
             "- distillation"]
    if data.get("dataset"):
        lines += ["datasets:", f"- {json.dumps(data['dataset'])}"]
    if evaluations:
        lines += ["model-index:", f"- name: {json.dumps(name)}", "  results:"]
        for ev in evaluations.values():
            lines += ["  - task:", "      type: text-classification",
                      "    dataset:", f"      name: {json.dumps(ev.get('dataset') or 'data')}",
                      f"      type: {json.dumps(ev.get('dataset') or 'data')}", f"      split: {ev['split']}",
                      "    metrics:", "    - type: accuracy", f"      value: {ev['accuracy']}",
                      "    - type: f1", "      name: macro-F1", f"      value: {ev['macro_f1']}"]
    return lines + ["---", ""]


def _body(record: dict[str, Any], evaluations: dict[str, Any], export: dict[str, Any] | None) -> list[str]:
    config, data, stats = record["config"], record.get("data", {}), record.get("stats", {})
    labels = record["labels"]
    lines = [f"# {data.get('dataset') or 'Text'} classifier distilled with PromptMix", "",
             f"A `{_base_model(record)}` fine-tuned as a {len(labels)}-class text classifier by "
             "promptmix-dspy (PromptMix, EMNLP 2023): a few labelled seeds, plus borderline "
             "texts an LLM wrote and an LLM classifier relabelled.", "",
             "## Labels", "", ", ".join(f"`{label}`" for label in labels), "", "## Training data", ""]
    lines += [f"- rows: {data.get('rows')} ({data.get('seeds', '?')} labelled seeds + "
              f"{data.get('augmented', data.get('added', '?'))} augmented)",
              "- rows per label: " + ", ".join(f"{k} {v}" for k, v in data.get("per_label", {}).items())]
    for key, what in (("dataset", "dataset"), ("method", "method"), ("seed", "seed draw"),
                      ("train_file", "augmented file"), ("seeds_from", "seeds from"), ("label_field", "labels from")):
        if data.get(key) not in (None, ""):
            lines.append(f"- {what}: `{data[key]}`")
    made = data.get("augmented_summary")
    if made:
        share = f"{made['relabel_share']:.0%}" if made.get("relabel_share") is not None else "n/a"
        lines += [f"- LLM(s) that wrote and relabelled the augmented rows: {', '.join(made['lms']) or 'not recorded'}",
                  f"- augmented rows whose label the LLM classifier changed: {made['relabeled']} of {made['rows']} "
                  f"({share})"]
    lines += ["", "## Training", "",
              f"- epochs {stats.get('epochs', config.get('epochs'))}, batch {config.get('batch_size')}, "
              f"lr {config.get('lr')}, weight decay {config.get('weight_decay')}, warmup {config.get('warmup_ratio')}, "
              f"max length {config.get('max_length')} tokens, seed {config.get('seed')}",
              f"- device {stats.get('device', '?')}, {stats.get('train_seconds', '?')} s, "
              f"final epoch loss {stats['epoch_losses'][-1]:.4f}" if stats.get("epoch_losses") else
              f"- device {stats.get('device', '?')}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items()), "",
              "## Evaluation", ""]
    if evaluations:
        lines += ["| dataset | split | examples | accuracy | macro-F1 | texts/s |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {ev.get('dataset')} | {ev['split']} | {ev['n']} | {ev['accuracy']:.4f} | {ev['macro_f1']:.4f} "
                  f"| {ev.get('texts_per_second') or ''} |" for ev in evaluations.values()]
    else:
        lines.append("Not evaluated yet: `promptmix evaluate --model DIR --dataset NAME` adds the figures here.")
    if export:
        lines += ["", "## ONNX export", "", f"- file `{export['file']}` ({export['bytes'] / 1e6:.1f} MB), opset "
                  f"{export['opset']}, quantization {export.get('quantize') or 'none'}",
                  f"- agreement with the torch model on {export['check']['n']} texts: "
                  f"{export['check']['argmax_agreement']:.2%} of argmax labels, largest probability difference "
                  f"{export['check']['max_prob_diff']:.4f}"]
    lines += ["", "## Use", "", "```python", "from transformers import pipeline",
              "classify = pipeline(\"text-classification\", model=\"PATH/TO/THIS/FOLDER\")", "```", "",
              "or `promptmix predict --model DIR --input texts.txt` (`--format onnx` on an exported folder, no torch).",
              "", "## Intended use and limits", "",
              "For labelling texts like the dataset's into exactly these classes. The student learned from a "
              "handful of seeds and LLM-written texts: it inherits the LLM's mistakes and blind spots, it has seen "
              "no real distribution of inputs, and it always answers one of the labels (there is no 'other'). Check "
              "its accuracy on your own labelled sample before relying on it; do not use it for decisions about "
              "people without human review."]
    return lines
