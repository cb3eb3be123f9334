"""One experiment: a method on one dataset and seed, every artifact in one run folder (the spec: spec.py).

    few-shot split -> descriptions -> generate -> relabel -> train -> evaluate

``run_experiment(spec, out)`` runs the steps a method needs and writes ``result.json``, the cell's row of the
results table. A finished step is not redone when the run is repeated: the LLM steps resume from their
journals (augment.py), a finished generation is read back without opening the LM, and train/evaluate leave a
marker in ``steps/``. Methods are the rows of the paper's table (``METHODS``); a1 and a2 read one shared
generation (a1 keeps the labels as generated), so the grid pays for it once.

Run folder::

    experiment.json  the spec and versions      augment/   the generation (unless shared by a grid)
    student/         the trained student        eval/      report.{json,md}, confusion.png, predictions.jsonl
    steps/           train.json, evaluate.json  result.json the cell's row: metrics, cost, seconds per stage
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.data.types import Dataset, Example
from promptmix_dspy.experiments.methods import METHODS, Cell, Method
from promptmix_dspy.experiments.spec import ExperimentSpec
from promptmix_dspy.llm.settings import LazyLM
from promptmix_dspy.method.programs import programs_identity
from promptmix_dspy.pipeline.augment import RunMismatch, run_augment
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.store.files import (
    atomic_write_json,
    atomic_write_jsonl,
    journal_usage,
    now_iso,
    read_journal,
    read_json,
    versions,
)

__all__ = ["GENERATION_MARKER", "JOURNALS", "SpecMismatch", "check_ready", "diff_settings", "generation_usage",
           "llm_call_seconds", "run_experiment"]

logger = logging.getLogger(__name__)

GENERATION_MARKER = "generation.json"  # what made a finished generation, checked before it is reused
JOURNALS = {"describe": "descriptions.jsonl", "generate": "generated.jsonl", "relabel": "relabeled.jsonl",
            "teacher": "teacher.jsonl"}


class SpecMismatch(ValueError):
    """The run folder holds an experiment made with other settings."""


# ----------------------------------------------------------------------------------------------------------
# The LM, opened only when a step needs it


# ----------------------------------------------------------------------------------------------------------
# The experiment


def run_experiment(spec: ExperimentSpec, out_dir: str | Path, lm: LazyLM | None = None, *,
                   generation_dir: str | Path | None = None, dataset: Dataset | None = None,
                   spent_elsewhere: float = 0.0, force: bool = False) -> dict:
    """Run (or finish) one experiment in out_dir and return its result row. ``generation_dir`` lets cells of a
    grid share a generation; by default it is out_dir/augment. A folder (or generation) made with other settings
    is refused (SpecMismatch), or started over with ``force``. ``spent_elsewhere`` counts toward max_cost."""
    out = Path(out_dir)
    _start(out, spec, force)
    if (out / "result.json").exists():
        logger.info("%s is finished: nothing to do", out)
        return read_json(out / "result.json")
    with contextlib.ExitStack() as stack:
        lm = lm or stack.enter_context(LazyLM(spec.lm_settings()))
        ds = dataset or load_dataset(spec.dataset, data_dir=spec.data_dir)
        cell = Cell(spec, ds, few_shot_split(ds, spec.shots_used, spec.seed))
        check_ready(cell)
        gen_dir = Path(generation_dir) if generation_dir else out / "augment"
        row = _run_steps(cell, out, lm, gen_dir, spent_elsewhere, force)
    atomic_write_json(out / "result.json", row)
    return row


def check_ready(cell: Cell) -> None:
    """Everything the experiment needs, checked before its first LLM call: a labelled test split, and the
    compiled programs it names (present, and compiled for these labels)."""
    if not cell.dataset.test:
        raise ValueError(f"dataset {cell.spec.dataset!r} has no labelled test split ({cell.dataset.source}): an "
                         f"experiment is scored on it. Give a test.jsonl (or --test file); nothing was run")
    programs = cell.spec.programs_dir if METHODS[cell.spec.method].generation or METHODS[cell.spec.method].teacher \
        else None
    if programs:
        from promptmix_dspy.method.programs import check_labels, read_meta

        try:
            meta = read_meta(programs)
        except FileNotFoundError as exc:
            raise ValueError(f"{cell.spec.method} reads the compiled programs in {programs}, and there are none: "
                             f"make them with `promptmix compile --dataset {cell.spec.dataset} --out {programs}` "
                             f"(nothing was run)") from exc
        check_labels(meta.get("labels", []), cell.dataset.labels, Path(programs))


def _start(out: Path, spec: ExperimentSpec, force: bool) -> None:
    path = out / "experiment.json"
    if path.exists() and read_json(path)["spec"] != spec.fingerprint():
        if not force:
            diff = diff_settings(read_json(path)["spec"], spec.fingerprint())
            raise SpecMismatch(f"{path} was written by an experiment with other settings ({diff}): use another "
                               f"folder, --force to redo it, or delete it")
        logger.warning("%s: other settings, --force: starting the cell over", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"spec": spec.fingerprint(), "versions": versions(), "updated": now_iso()})


def diff_settings(old: dict, new: dict) -> str:
    """The settings two fingerprints disagree on, ``key: old -> new``."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def _run_steps(cell: Cell, out: Path, lm: LazyLM, generation_dir: Path, spent_elsewhere: float,
               force: bool) -> dict:
    method = METHODS[cell.spec.method]
    atomic_write_jsonl(out / "seeds.jsonl", [asdict(e) for e in cell.split.seeds])
    if method.teacher:
        from promptmix_dspy.experiments.teacher import run_teacher

        result = run_teacher(cell.spec, cell.split, out, lm, spent_elsewhere)
        return _row(cell, {**result, "llm_call_seconds": llm_call_seconds(out, ("describe", "teacher"))})
    usage: dict = {"llm": None, "seconds": {}, "lm": None}
    if method.generation:
        cell.generated, usage = _generation(cell, method, generation_dir, lm, spent_elsewhere, force)
    second = _second_round(cell, generation_dir, out, lm, spent_elsewhere) if method.rounds == 2 else None
    rows = list(cell.split.seeds) + method.extra_rows(cell)
    student_dir = _train(cell, rows, out, generation_dir / "augmented.jsonl" if method.generation else None)
    report = _evaluate(cell, student_dir, out)
    usage["seconds"] = {**usage["seconds"], "train": report.pop("train_seconds"),
                        "evaluate": report.pop("evaluate_seconds")}
    if second is not None:
        usage.update(_second_round_record(cell, second, student_dir, out, generation_dir))
    return _row(cell, {**report, **usage, "train_rows": len(rows)})


def _second_round(cell: Cell, gen_dir: Path, out: Path, lm: LazyLM, spent_elsewhere: float):
    """a2fb: the probe pool and round 2 (experiments/feedback.py), in out/feedback, journaled."""
    from promptmix_dspy.experiments.feedback import run_for_cell

    folder = out / "feedback"
    spent = journal_usage([folder / "generated.jsonl", folder / "relabeled.jsonl"])["cost_usd"] or 0.0
    result = run_for_cell(cell, gen_dir, folder, lm(), cell.spec.budget(spent + spent_elsewhere))
    cell.second_round = result.rows
    return result


def _second_round_record(cell: Cell, result, student_dir: Path, out: Path, gen_dir: Path) -> dict:
    from promptmix_dspy.experiments.feedback import record_after

    confusion = record_after(result, student_dir, cell.split.labels, out / "feedback")
    journals = [gen_dir / JOURNALS[s] for s in ("describe", "generate", "relabel")]
    journals += [out / "feedback" / "generated.jsonl", out / "feedback" / "relabeled.jsonl"]
    return {"llm": journal_usage(journals), "second_round": {
        "rows": len(result.rows), "pairs": confusion["pair_rates_before"],
        "pair_rates_after": confusion["pair_rates_after"], "held_out": confusion["held_out"]}}


def _generation(cell: Cell, method: Method, gen_dir: Path, lm: LazyLM, spent_elsewhere: float,
                force: bool) -> tuple[list[dict], dict]:
    """The generation's rows (selected.jsonl for a method that does not relabel, augmented.jsonl for one that
    does), read back when finished with the same settings (no LM needed), else run or resumed."""
    config, stages = cell.spec.augment_config(method.generation), method.generation_stages
    identity = _generation_identity(cell.spec, config)
    if not _generation_finished(gen_dir, identity, stages, force):
        try:
            run_augment(cell.dataset, gen_dir, config, lm(), programs=cell.spec.programs_dir, stages=stages,
                        spent_elsewhere=spent_elsewhere)
        except RunMismatch:
            if not force:
                raise
            logger.warning("%s: an unfinished generation with other settings, --force: starting over", gen_dir)
            shutil.rmtree(gen_dir)
            run_augment(cell.dataset, gen_dir, config, lm(), programs=cell.spec.programs_dir, stages=stages,
                        spent_elsewhere=spent_elsewhere)
        atomic_write_json(gen_dir / GENERATION_MARKER, identity)
    name = "augmented.jsonl" if "relabel" in stages else "selected.jsonl"
    rows = [r for _, r in _read_jsonl(gen_dir / name)]
    summary = read_json(gen_dir / "summary.json")
    usage = {"llm": generation_usage(gen_dir, stages), "lm": read_json(gen_dir / "config.json")["lm"],
             "seconds": {k: v for k, v in summary["seconds"].items() if k in stages},
             "llm_call_seconds": llm_call_seconds(gen_dir, stages),
             "relabeled_share": summary["relabeled_share"] if "relabel" in stages else None,
             "generation": str(gen_dir)}
    return rows, usage


def _generation_identity(spec: ExperimentSpec, config: AugmentConfig) -> dict:
    """Everything that made a generation: the augment settings, the LLM and the compiled programs."""
    return {"dataset": spec.dataset, "augment": config.fingerprint(), "lm": spec.lm_identity(),
            "programs": programs_identity(spec.programs_dir)}


def _generation_finished(gen_dir: Path, identity: dict, stages: tuple[str, ...], force: bool) -> bool:
    """True when gen_dir holds a generation with these stages done by the same settings; a generation made by
    other settings is refused (GenerationMismatch), or deleted with ``force``."""
    marker = gen_dir / GENERATION_MARKER
    if not marker.exists():
        return False
    made = read_json(marker)
    if made != identity:
        if not force:
            raise SpecMismatch(f"{gen_dir} holds a generation made with other settings "
                               f"({diff_settings(made, identity)}): use another --out, --force to redo it, or "
                               f"delete it")
        logger.warning("%s: made with other settings, --force: generating again", gen_dir)
        shutil.rmtree(gen_dir)
        return False
    done = read_json(gen_dir / "summary.json").get("stages", []) if (gen_dir / "summary.json").exists() else []
    return all(stage in done for stage in stages)


def generation_usage(gen_dir: Path, stages: tuple[str, ...]) -> dict:
    """LLM calls, tokens and cost of the given stages of a generation, from its journals."""
    return journal_usage([Path(gen_dir) / JOURNALS[s] for s in stages])


def llm_call_seconds(folder: Path, stages: tuple[str, ...]) -> dict[str, float]:
    """Seconds summed over every LLM call of each stage (earlier, interrupted sessions included), from the
    journals: the wall clock of one session misses resumed work. With N requests in flight, wall ~ this / N."""
    out = {}
    for stage in stages:
        path = Path(folder) / JOURNALS[stage]
        if path.exists():
            out[stage] = round(sum((row.get("usage") or {}).get("seconds", 0.0) for row in read_journal(path)), 1)
    return out


def _train(cell: Cell, rows: list[Example], out: Path, augmented: Path | None = None) -> Path:
    from promptmix_dspy.student.card import augmented_summary
    from promptmix_dspy.student.train import train_student

    marker, student_dir = out / "steps" / "train.json", out / "student"
    if marker.exists():
        return student_dir
    started = time.monotonic()
    provenance = {"method": cell.spec.method, "dataset": cell.spec.dataset, "seed": cell.spec.seed,
                  "seeds": len(cell.split.seeds), "added": len(rows) - len(cell.split.seeds)}
    if augmented is not None and augmented.is_file():
        provenance["augmented_summary"] = augmented_summary(augmented)
    train_student(rows, cell.dataset.labels, cell.spec.train_config(), student_dir, provenance=provenance)
    atomic_write_json(marker, {"seconds": round(time.monotonic() - started, 3), "rows": len(rows),
                               "finished": now_iso()})
    return student_dir


def _evaluate(cell: Cell, student_dir: Path, out: Path) -> dict:
    from promptmix_dspy.student.evaluate import evaluate_model

    marker = out / "steps" / "evaluate.json"
    if not marker.exists():
        started = time.monotonic()
        meta = {"dataset": cell.spec.dataset, "method": cell.spec.method, "seed": cell.spec.seed, "split": "test"}
        report = evaluate_model(student_dir, cell.dataset.test, out / "eval", meta=meta)
        atomic_write_json(marker, {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                                   "n_test": report["n"], "seconds": round(time.monotonic() - started, 3),
                                   "finished": now_iso()})
    done = read_json(marker)
    return {"accuracy": done["accuracy"], "macro_f1": done["macro_f1"], "n_test": done["n_test"],
            "evaluate_seconds": done["seconds"], "train_seconds": read_json(out / "steps" / "train.json")["seconds"]}


def _row(cell: Cell, result: dict) -> dict:
    spec = cell.spec
    return {"dataset": spec.dataset, "method": spec.method, "seed": spec.seed, "shots": spec.shots_used,
            **result, "config": spec.fingerprint(), "versions": versions(), "finished": now_iso()}


def _read_jsonl(path: Path):
    from promptmix_dspy.data.datasets import read_jsonl

    return read_jsonl(path)
