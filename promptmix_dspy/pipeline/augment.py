"""Running the PromptMix programs over a dataset: few-shot split -> descriptions -> mix plan -> generated.jsonl
-> relabeled augmented.jsonl, one artifact per step in a run folder.

Every LLM answer is journaled as it arrives, so a killed run resumes with the same command and repeats no
finished call; final files are written atomically; config.json carries the settings and versions.

    from promptmix_dspy.pipeline import augment as augment
    result = augment.augment("trec6", "runs/trec6", augment.AugmentConfig(per_class=10), data_dir="data")
    ds = result.to_hf_dataset()
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import FewShotSplit, few_shot_split
from promptmix_dspy.data.types import Dataset
from promptmix_dspy.llm.batch import in_batches, wait_for_batch
from promptmix_dspy.llm.runner import Budget
from promptmix_dspy.llm.settings import LMHandle, LMSettings, open_lm
from promptmix_dspy.method.programs import programs_identity
from promptmix_dspy.method.protocol import PROTOCOL_VERSION
from promptmix_dspy.pipeline.config import RESUMABLE, AugmentConfig
from promptmix_dspy.pipeline.decontaminate import drop_test_texts
from promptmix_dspy.pipeline.describe import describe_classes, describe_task
from promptmix_dspy.pipeline.generate import generate
from promptmix_dspy.pipeline.program import build_program
from promptmix_dspy.pipeline.relabel import relabel
from promptmix_dspy.store.files import (
    atomic_write_json,
    atomic_write_jsonl,
    journal_usage,
    now_iso,
    read_json,
    versions,
)

__all__ = ["JOURNALS", "STAGES", "AugmentConfig", "AugmentResult", "RunMismatch", "augment", "run_augment"]

logger = logging.getLogger(__name__)
JOURNALS = ("descriptions.jsonl", "generated.jsonl", "relabeled.jsonl")
STAGES = ("describe", "generate", "relabel")


class RunMismatch(ValueError):
    """The output folder holds a run made with other settings."""


@dataclass
class AugmentResult:
    out_dir: Path | None
    rows: list[dict]
    seeds: list[dict]
    summary: dict = field(default_factory=dict)

    def to_hf_dataset(self):
        import datasets

        return datasets.Dataset.from_list(self.rows)


def augment(dataset: str | Path | Dataset, out_dir: str | Path, config: AugmentConfig | None = None,
            lm: LMSettings | None = None, *, data_dir: str | Path | None = None,
            programs: str | Path | None = None) -> AugmentResult:
    """Load the dataset, open the LM (the embedded server when none is set) and run the pipeline."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir=data_dir)
    with open_lm(lm or LMSettings()) as handle:
        return run_augment(ds, out_dir, config or AugmentConfig(), handle, programs=programs)


def run_augment(dataset: Dataset, out_dir: str | Path, config: AugmentConfig, handle: LMHandle,
                programs: str | Path | None = None, *, stages: tuple[str, ...] = STAGES,
                spent_elsewhere: float = 0.0) -> AugmentResult:
    """The pipeline on an open LM. Re-running it on the same folder resumes and redoes no finished call.

    ``stages=("describe", "generate")`` stops before relabeling (selected.jsonl holds the generation); running
    again with every stage finishes it. ``spent_elsewhere`` counts toward ``max_cost`` (a grid's other cells).
    With the provider's batch API (``handle.batch``) the stages run in passes, each waiting for one batch."""
    return in_batches(handle, Path(out_dir), lambda: _run(dataset, Path(out_dir), config, handle, programs, stages,
                                                          spent_elsewhere))


def _run(dataset: Dataset, out: Path, config: AugmentConfig, handle: LMHandle, programs: str | Path | None,
         stages: tuple[str, ...], spent_elsewhere: float) -> AugmentResult:
    split = few_shot_split(dataset, config.shots, config.seed, config.dev_per_class)
    _start_run_folder(out, dataset, split, config, handle, programs)
    spent = journal_usage([out / name for name in JOURNALS])["cost_usd"] or 0.0  # earlier sessions of this run
    budget, timings = Budget(config.max_errors, config.max_cost, spent_before=spent + spent_elsewhere), {}
    rows, drops, done = [], [], [s for s in STAGES if s in stages]
    contamination: dict = {"checked": False, "why": "no generation finished"}
    labelling: dict = {}
    try:
        task = _timed(timings, "describe", describe_task, split, config, handle, out, budget)
        wait_for_batch()
        cards = _timed(timings, "describe", describe_classes, split, config, handle, out, budget, task)
        wait_for_batch()
        program = build_program(cards, config, programs, task)
        selected, drops = _timed(timings, "generate", generate, program, split, config, handle, out, budget)
        wait_for_batch()
        selected, removed, contamination = drop_test_texts(selected, dataset, out, config.decontaminate)
        drops += removed
        atomic_write_jsonl(out / "selected.jsonl", selected)
        if "relabel" in stages:
            rows, more, labelling = _timed(timings, "relabel", relabel, program, selected, config, handle, out,
                                           budget)
            drops += more
    finally:
        atomic_write_json(out / "usage.json", {**budget.to_dict(), "seconds": timings})
    summary = {**_summary(rows if "relabel" in stages else selected, drops, budget, timings, config, out),
               "contamination": contamination, "labelling": labelling, "stages": done}
    if "relabel" in stages:
        atomic_write_jsonl(out / "augmented.jsonl", rows)
    atomic_write_json(out / "summary.json", summary)
    _log_skipped(summary["llm"], out)
    return AugmentResult(out, rows if "relabel" in stages else selected, [e.to_dict() for e in split.seeds], summary)


def _log_skipped(llm: dict, out: Path) -> None:
    if llm["failed_units"]:
        why = ", ".join(f"{kind} x{n}" for kind, n in llm["errors"].items())
        logger.warning("skipped %d LLM calls that still failed after %d retries in all (%s); see %s. Run the same "
                       "command again to retry them.", llm["failed_units"], llm["retries"], why, out / "summary.json")


def _timed(timings: dict, name: str, fn: Any, *args: Any) -> Any:
    start = time.monotonic()
    try:
        return fn(*args)
    finally:
        timings[name] = round(timings.get(name, 0.0) + time.monotonic() - start, 3)


def _start_run_folder(out: Path, dataset: Dataset, split: FewShotSplit, config: AugmentConfig,
                      handle: LMHandle, programs: str | Path | None) -> None:
    """Write the run's inputs, or check that an existing folder was made by the same settings."""
    record = {"dataset": dataset.name, "dataset_source": dataset.source, "labels": dataset.labels,
              "data": dataset.identity()["sha256"], "protocol": PROTOCOL_VERSION,
              "augment": config.fingerprint(), "lm": handle.describe(),
              "programs": programs_identity(programs)}
    config_path = out / "config.json"
    if config_path.exists():
        _check_same_run(read_json(config_path), record, config_path)
        logger.info("resuming the run in %s", out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_path, {**record, "resumable_settings": {k: getattr(config, k) for k in RESUMABLE},
                                    "lm_transport": handle.transport,
                                    "versions": versions(), "updated": now_iso()})
    atomic_write_json(out / "labels.json", dataset.labels)
    atomic_write_jsonl(out / "seeds.jsonl", [e.to_dict() for e in split.seeds])
    if split.dev:
        atomic_write_jsonl(out / "dev.jsonl", [e.to_dict() for e in split.dev])


def _check_same_run(old: dict, new: dict, path: Path) -> None:
    keys = ("dataset", "data", "protocol", "labels", "augment", "lm", "programs")
    diff = [k for k in keys if _comparable(k, old.get(k)) != _comparable(k, new.get(k))]
    if diff:
        detail = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise RunMismatch(f"{path} was written by a run with other settings ({detail}). Use another --out, "
                          f"or delete the folder to start over.")


def _comparable(key: str, value: Any) -> Any:
    """What must match for a run to resume. The embedded server gets a random free port each time it starts,
    so its address is not part of its identity; any other change of LM (model, endpoint, adapter) is."""
    if key == "lm" and isinstance(value, dict) and value.get("embedded"):
        return {k: v for k, v in value.items() if k != "api_base"}
    return value


def _summary(rows: list[dict], drops: list[tuple[str, str]], budget: Budget, timings: dict,
             config: AugmentConfig, out: Path) -> dict:
    per_class = Counter(r["generated_for"] for r in rows)
    relabeled = sum(r.get("relabeled", False) for r in rows)
    journals = [out / name for name in JOURNALS]
    return {"kept": len(rows), "kept_per_class": dict(per_class),
            "dropped": dict(Counter(reason for _, reason in drops)),
            "relabeled_share": round(relabeled / len(rows), 4) if rows and config.relabel else None,
            "llm": journal_usage(journals), "this_session": budget.to_dict(), "seconds": timings,
            "finished": now_iso()}
