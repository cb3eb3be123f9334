"""One experiment: a method on one dataset and seed, every artifact in one run folder (the spec: spec.py).

    few-shot split -> descriptions -> generate -> relabel -> train -> evaluate

``run_experiment(spec, out)`` runs the steps a method needs and writes ``result.json``, the cell's row of the
results table. A finished step is not redone when the run is repeated: the LLM steps resume from their
journals (augment.py), a finished generation is read back without opening the LM, and train/evaluate leave a
marker in ``steps/``. Methods are the rows of the paper's table (``METHODS``); a1, a2, a2p, a2c read one shared
generation, so the grid pays for it once.

Every row records ``inputs``: the sha256 of the data it read (train, test, labels), of the seeds, of the
generated texts, of the rows the student trained on, of the compiled programs, of the teacher's test sample, and
the protocol version (experiments/claims.py pairs two cells only where the inputs they share are identical). A
finished cell whose generation was made again since (another sample) is stale: its row is set aside and the
student is trained again on the generation at hand. A folder made on other data is refused.

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
from pathlib import Path

from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.data.types import Dataset, Example
from promptmix_dspy.experiments.methods import METHODS, Cell, Method
from promptmix_dspy.experiments.spec import ExperimentSpec
from promptmix_dspy.llm.batch import in_batches, wait_for_batch
from promptmix_dspy.llm.settings import LazyLM
from promptmix_dspy.method.programs import programs_identity
from promptmix_dspy.method.protocol import PROTOCOL_VERSION
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
from promptmix_dspy.store.identity import texts_sha256

__all__ = ["GENERATION_MARKER", "JOURNALS", "SpecMismatch", "check_ready", "diff_settings", "generation_sha256",
           "generation_usage", "llm_call_seconds", "run_experiment"]

logger = logging.getLogger(__name__)

GENERATION_MARKER = "generation.json"  # what made a finished generation, checked before it is reused
JOURNALS = {"describe": "descriptions.jsonl", "generate": "generated.jsonl", "relabel": "relabeled.jsonl",
            "teacher": "teacher.jsonl"}


class SpecMismatch(ValueError):
    """The run folder holds an experiment made with other settings or on other data."""


def run_experiment(spec: ExperimentSpec, out_dir: str | Path, lm: LazyLM | None = None, *,
                   generation_dir: str | Path | None = None, teacher_dir: str | Path | None = None,
                   dataset: Dataset | None = None, spent_elsewhere: float = 0.0, force: bool = False) -> dict:
    """Run (or finish) one experiment in out_dir and return its result row. ``generation_dir`` and
    ``teacher_dir`` let cells of a grid share a generation and the teacher's answers; by default they are
    out_dir/augment and out_dir/teacher. A folder made with other settings or on other data is refused
    (SpecMismatch), or started over with ``force``. ``spent_elsewhere`` counts toward max_cost."""
    out = Path(out_dir)
    ds = dataset or load_dataset(spec.dataset, data_dir=spec.data_dir)
    _start(out, spec, ds, force)
    gen_dir = Path(generation_dir) if generation_dir else out / "augment"
    if (out / "result.json").exists() and not _stale(out, gen_dir):
        logger.info("%s is finished: nothing to do", out)
        return read_json(out / "result.json")
    with contextlib.ExitStack() as stack:
        lm = lm or stack.enter_context(LazyLM(spec.lm_settings()))
        cell = Cell(spec, ds, few_shot_split(ds, spec.shots_used, spec.seed, spec.dev_per_class))
        check_ready(cell)
        teacher = Path(teacher_dir) if teacher_dir else out / "teacher"
        steps = lambda: _run_steps(cell, out, lm, gen_dir, teacher, spent_elsewhere, force)  # noqa: E731
        row = in_batches(lm(), out, steps) if _needs_lm(spec) and lm.settings.batch_api else steps()
    atomic_write_json(out / "result.json", row)
    return row


def _needs_lm(spec: ExperimentSpec) -> bool:
    method = METHODS[spec.method]
    return bool(method.generation or method.teacher)


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


def _start(out: Path, spec: ExperimentSpec, dataset: Dataset, force: bool) -> None:
    path = out / "experiment.json"
    record = {"spec": spec.fingerprint(), "data": dataset.identity()}
    if path.exists():
        made = read_json(path)
        why = (diff_settings(made["spec"], record["spec"]) if made["spec"] != record["spec"] else
               _data_change(made.get("data"), record["data"], dataset))
        if why:
            if not force:
                raise SpecMismatch(f"{path} was written by an experiment with other settings or data ({why}): use "
                                   f"another folder, --force to redo it, or delete it")
            logger.warning("%s: %s, --force: starting the cell over", out, why)
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {**record, "versions": versions(), "updated": now_iso()})


def _data_change(made: dict | None, now: dict, dataset: Dataset) -> str | None:
    if made is None or made.get("sha256") == now["sha256"]:
        return None
    parts = [k for k in ("train", "test", "labels", "descriptions", "task") if made.get(k) != now.get(k)]
    return f"the data differs ({', '.join(parts)}) from the data read now ({dataset.source})"


def diff_settings(old: dict, new: dict) -> str:
    """The settings two fingerprints disagree on, ``key: old -> new``."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def _stale(out: Path, gen_dir: Path) -> bool:
    """A finished cell whose generation was made again after it trained (another sample of the same calls): its
    row is set aside (result.stale-<time>.json) and its student retrained on the generation at hand."""
    row = read_json(out / "result.json")
    recorded = (row.get("inputs") or {}).get("generation")
    if not recorded or not (gen_dir / "selected.jsonl").exists() or generation_sha256(gen_dir) == recorded:
        return False
    stamp = now_iso().replace(":", "")
    logger.warning("%s was trained on another sample of its generation (%s, now %s): retraining it", out,
                   recorded[:12], generation_sha256(gen_dir)[:12])
    (out / "result.json").rename(out / f"result.stale-{stamp}.json")
    for marker in ("train.json", "evaluate.json"):
        (out / "steps" / marker).unlink(missing_ok=True)
    return True


def generation_sha256(gen_dir: Path) -> str:
    """The identity of a generation: its selected texts (text and the class each was written for), in order."""
    return texts_sha256(_read_rows(gen_dir / "selected.jsonl"), ("text", "generated_for"))


def _run_steps(cell: Cell, out: Path, lm: LazyLM, gen_dir: Path, teacher_dir: Path, spent_elsewhere: float,
               force: bool) -> dict:
    method = METHODS[cell.spec.method]
    atomic_write_jsonl(out / "seeds.jsonl", [e.to_dict() for e in cell.split.seeds])
    usage: dict = {"llm": None, "seconds": {}, "lm": None}
    if method.generation:
        cell.generated, usage = _generation(cell, method, gen_dir, lm, spent_elsewhere, force)
        wait_for_batch()  # nothing below may use a generation whose calls still wait for their batch
    if method.teacher:
        return _teacher_row(cell, out, lm, teacher_dir, spent_elsewhere)
    if method.relabel_with:
        from promptmix_dspy.experiments.compiled import compiled_relabel

        cell.generated = compiled_relabel(cell, gen_dir, out / "relabel", lm(), cell.spec.budget(spent_elsewhere))
        usage["llm_call_seconds"] = {**usage.get("llm_call_seconds", {}),
                                     **llm_call_seconds(out / "relabel", ("relabel",))}
    second = _second_round(cell, gen_dir, out, lm, spent_elsewhere) if method.rounds == 2 else None
    rows = list(cell.split.seeds) + method.extra_rows(cell)
    student_dir = _train(cell, rows, out, gen_dir / "augmented.jsonl" if method.generation else None)
    report = _evaluate(cell, student_dir, out)
    usage["seconds"] = {**usage["seconds"], "train": report.pop("train_seconds"),
                        "evaluate": report.pop("evaluate_seconds")}
    if second is not None:
        usage.update(_second_round_record(cell, second, student_dir, out, gen_dir))
    inputs = {"train_rows": texts_sha256(rows, ("text", "label", "probs"))}
    if method.generation:
        inputs["generation"] = generation_sha256(gen_dir)
    if method.relabel_with:
        inputs["programs"] = programs_identity(cell.spec.relabel_programs_dir)
    return _row(cell, {**report, **usage, "train_rows": len(rows)}, inputs)


def _teacher_row(cell: Cell, out: Path, lm: LazyLM, teacher_dir: Path, spent_elsewhere: float) -> dict:
    from promptmix_dspy.experiments.teacher import run_teacher, teacher_sample_sha256

    result = run_teacher(cell.spec, cell.split, teacher_dir, out, lm, cell.generated or None, spent_elsewhere)
    inputs = {"teacher_sample": teacher_sample_sha256(cell.split.test, cell.spec.teacher_test_limit)}
    return _row(cell, {**result, "llm_call_seconds": llm_call_seconds(teacher_dir, ("describe", "teacher"))}, inputs)


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
    identity = _generation_identity(cell, config)
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
    rows = _read_rows(gen_dir / name)
    summary = read_json(gen_dir / "summary.json")
    usage = {"llm": generation_usage(gen_dir, stages), "lm": read_json(gen_dir / "config.json")["lm"],
             "seconds": {k: v for k, v in summary["seconds"].items() if k in stages},
             "llm_call_seconds": llm_call_seconds(gen_dir, stages),
             "relabeled_share": summary["relabeled_share"] if "relabel" in stages else None,
             "contamination": summary.get("contamination"), "labelling": summary.get("labelling"),
             "generation": str(gen_dir)}
    return rows, usage


def _generation_identity(cell: Cell, config: AugmentConfig) -> dict:
    """Everything that made a generation: the data, the protocol, the augment settings, the LLM and the programs."""
    spec = cell.spec
    return {"dataset": spec.dataset, "data": cell.dataset.identity()["sha256"], "protocol": PROTOCOL_VERSION,
            "augment": config.fingerprint(), "lm": spec.lm_identity(), "programs": programs_identity(spec.programs_dir)}


def _generation_finished(gen_dir: Path, identity: dict, stages: tuple[str, ...], force: bool) -> bool:
    """True when gen_dir holds a generation with these stages done by the same settings; a generation made by
    other settings is refused (SpecMismatch), or deleted with ``force``."""
    marker = gen_dir / GENERATION_MARKER
    if not marker.exists():
        return False
    made = read_json(marker)
    if made != identity:
        if not force:
            raise SpecMismatch(f"{gen_dir} holds a generation made with other settings or data "
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
    """The student on the whole test set, and on the teacher's sample of it (from the same predictions)."""
    from promptmix_dspy.student.evaluate import evaluate_model

    marker = out / "steps" / "evaluate.json"
    if not marker.exists():
        started = time.monotonic()
        meta = {"dataset": cell.spec.dataset, "method": cell.spec.method, "seed": cell.spec.seed, "split": "test"}
        report = evaluate_model(student_dir, cell.dataset.test, out / "eval", meta=meta)
        atomic_write_json(marker, {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                                   "n_test": report["n"], "teacher_sample": _on_teacher_sample(cell, out),
                                   "seconds": round(time.monotonic() - started, 3), "finished": now_iso()})
    done = read_json(marker)
    return {"accuracy": done["accuracy"], "macro_f1": done["macro_f1"], "n_test": done["n_test"],
            "teacher_sample": done.get("teacher_sample"), "evaluate_seconds": done["seconds"],
            "train_seconds": read_json(out / "steps" / "train.json")["seconds"]}


def _on_teacher_sample(cell: Cell, out: Path) -> dict:
    """The student's accuracy and macro-F1 on the teacher's test texts, so the two compare on the same texts."""
    from promptmix_dspy.experiments.teacher import teacher_test_set
    from promptmix_dspy.student.evaluate import classification_metrics

    predicted = {row["text"]: row["prediction"] for row in read_journal(out / "eval" / "predictions.jsonl")}
    sample = teacher_test_set(cell.dataset.test, cell.spec.teacher_test_limit)
    scores = classification_metrics([e.label for e in sample], [predicted[e.text] for e in sample], cell.split.labels)
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "n": len(sample)}


def _row(cell: Cell, result: dict, inputs: dict) -> dict:
    from promptmix_dspy.experiments.teacher import teacher_sample_sha256

    spec = cell.spec
    inputs = {"protocol": PROTOCOL_VERSION, "data": cell.dataset.identity()["sha256"],
              "seeds": cell.split.seeds_sha256(),
              "teacher_sample": teacher_sample_sha256(cell.dataset.test, spec.teacher_test_limit), **inputs}
    return {"dataset": spec.dataset, "method": spec.method, "seed": spec.seed, "shots": spec.shots_used,
            "labels_beyond_seeds": len(cell.split.dev), **result, "inputs": inputs, "config": spec.fingerprint(),
            "versions": versions(), "finished": now_iso()}


def _read_rows(path: Path) -> list[dict]:
    from promptmix_dspy.data.datasets import read_jsonl

    return [row for _, row in read_jsonl(path)]
