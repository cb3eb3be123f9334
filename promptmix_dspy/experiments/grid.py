"""The benchmark grid: datasets x methods x seeds, one experiment per cell, finished cells skipped on re-run.

    out/cells/<dataset>/<method>/seed<k>/        one run folder per cell (experiment.py)
    out/generations/<dataset>/seed<k>/<mix|nomix>/   generations shared by the cells that read them
    out/results.jsonl, results.md, *.png          the table, the cost and the plots (report.py)

The LM is opened only if some unfinished cell needs it, so re-running a finished grid rebuilds the report
without starting a server or sending a request. A finished cell is reused only when everything that made it
matches; otherwise the grid stops and says what differs (``--force`` redoes it). A cell that fails is logged
and left unfinished (the next run retries it); a spent budget (--max-errors, --max-cost, whole grid, resumed
sessions included for the cost) stops the grid.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.types import Dataset
from promptmix_dspy.experiments.experiment import SpecMismatch, diff_settings, run_experiment
from promptmix_dspy.experiments.methods import METHODS
from promptmix_dspy.experiments.spec import ExperimentSpec, dataset_key, load_spec_data, merge_overrides
from promptmix_dspy.llm.runner import RunStopped
from promptmix_dspy.llm.settings import LazyLM
from promptmix_dspy.pipeline.augment import RunMismatch
from promptmix_dspy.store.files import atomic_write_json, atomic_write_jsonl, journal_usage, now_iso, read_json

ADOPTED = "adopted.json"  # in a cell folder: the results.jsonl line its result.json was taken from

__all__ = ["ADOPTED", "GridSpec", "adopt_cells", "spent", "cell_dir", "cell_path", "collect_results", "generation_dir",
           "load_grid", "run_grid", "teacher_dir"]

logger = logging.getLogger(__name__)


@dataclass
class GridSpec:
    """The grid's axes and the settings every cell shares (ExperimentSpec fields).

    ``share_llm_from``: another grid folder whose LLM work this grid reads instead of doing it again: its
    generations and its teacher cells, reused only when everything that made them matches (a second table
    of other student settings over the same generated data costs no LLM call).

    ``limits``: a smaller protocol for some datasets or methods, stated in the spec rather than left pending:
    ``{"banking77": {"seeds": [0, 1, 2], "methods": [...]}, "a2c-dev": {"seeds": [0, 1, 2], "datasets": [...]}}``.
    A cell is planned when every limit naming its dataset or its method admits it.
    """

    datasets: list[str]
    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    base: dict[str, Any] = field(default_factory=dict)
    share_llm_from: str | None = None
    limits: dict[str, dict[str, list]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.datasets or not self.methods or not self.seeds:
            raise ValueError("a grid needs at least one dataset, one method and one seed")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
        clash = {"dataset", "method", "seed"} & set(self.base)
        if clash:
            raise ValueError(f"{sorted(clash)} are grid axes: set datasets/methods/seeds instead")
        unknown = set(self.base) - {f.name for f in fields(ExperimentSpec)}
        if unknown:
            known = sorted(f.name for f in fields(ExperimentSpec))
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; known: {known}")
        for name, limit in self.limits.items():
            if name not in METHODS and name not in self.datasets:
                raise ValueError(f"[grid.limits.{name}]: {name!r} is neither a method nor one of the grid's "
                                 f"datasets {self.datasets}")
            bad = set(limit) - {"seeds", "datasets", "methods"}
            if bad:
                raise ValueError(f"[grid.limits.{name}] takes seeds, datasets and methods, got {sorted(bad)}")
        self.cells()  # validates the shared settings once, up front

    def planned(self, dataset: str, method: str, seed: int) -> bool:
        """Whether the limits admit this cell."""
        for name in (dataset, method):
            limit = self.limits.get(name, {})
            if "seeds" in limit and seed not in limit["seeds"]:
                return False
            if "methods" in limit and method not in limit["methods"]:
                return False
            if "datasets" in limit and dataset not in limit["datasets"]:
                return False
        return True

    def planned_seeds(self, dataset: str, method: str) -> list[int]:
        return [s for s in self.seeds if self.planned(dataset, method, s)]

    def cells(self) -> list[ExperimentSpec]:
        """Seed-major order, so an interrupted grid has whole seeds of every dataset and method."""
        return [ExperimentSpec(dataset=d, method=m, seed=s, **self.base)
                for s in self.seeds for d in self.datasets for m in self.methods if self.planned(d, m, s)]

    def needs_lm(self) -> bool:
        return any(METHODS[m].generation or METHODS[m].teacher for m in self.methods)

    def folders(self, out: str | Path, spec: ExperimentSpec) -> tuple[Path, Path | None]:
        """(the cell's folder, the generation folder it reads), in ``out`` or in ``share_llm_from``."""
        llm_root = self.llm_root(out)
        cell_root = llm_root if METHODS[spec.method].teacher else Path(out)
        return cell_dir(cell_root, spec), generation_dir(llm_root, spec)

    def llm_root(self, out: str | Path) -> Path:
        return Path(self.share_llm_from) if self.share_llm_from else Path(out)


def load_grid(path: str | Path | None = None, **overrides: Any) -> GridSpec:
    """A grid from TOML ([grid] datasets/methods/seeds, the rest as in an experiment spec) and overrides."""
    data = {**load_spec_data(path), "spec_dir": str(Path(path).resolve().parent)} if path else {}
    axes = data.pop("grid", {})
    extra = set(axes) - {"datasets", "methods", "seeds", "share_llm_from", "limits"}
    if extra:
        raise ValueError(f"{path}: [grid] takes datasets, methods, seeds, share_llm_from and limits only, got "
                         f"{sorted(extra)} (TOML puts every key after a [table] header into that table: write "
                         f"shared settings above it)")
    for key in ("dataset", "method", "seed"):
        data.pop(key, None)
    for axis in ("datasets", "methods", "seeds"):
        if overrides.get(axis) is not None:
            axes[axis] = overrides.pop(axis)
    data = merge_overrides(data, overrides)
    if not axes.get("datasets") or not axes.get("methods"):
        raise ValueError("the grid needs datasets and methods (from --datasets/--methods or a [grid] table)")
    limits = {k: v for k, v in axes.get("limits", {}).items() if k in METHODS or k in axes["datasets"]}
    return GridSpec(axes["datasets"], axes["methods"], axes.get("seeds", [0, 1, 2]), data,
                    overrides.pop("share_llm_from", None) or axes.get("share_llm_from"), limits)


def cell_dir(out: Path, spec: ExperimentSpec) -> Path:
    return cell_path(out, spec.dataset, spec.method, spec.seed)


def cell_path(out: Path, dataset: str, method: str, seed: int) -> Path:
    """Where a cell's files live in a grid's output folder."""
    return Path(out) / "cells" / dataset_key(dataset) / method / f"seed{seed}"


def teacher_dir(out: Path, spec: ExperimentSpec) -> Path:
    """The teacher's answers for a dataset and seed, shared by its llm and llm-cal cells."""
    return Path(out) / "generations" / dataset_key(spec.dataset) / f"seed{spec.seed}" / "teacher"


def generation_dir(out: Path, spec: ExperimentSpec) -> Path | None:
    generation = METHODS[spec.method].generation
    if not generation:
        return None
    return Path(out) / "generations" / dataset_key(spec.dataset) / f"seed{spec.seed}" / generation


def run_grid(grid: GridSpec, out: str | Path, lm: LazyLM | None = None, force: bool = False) -> list[dict]:
    """Run every unfinished cell, then collect results.jsonl; returns the rows of the finished cells.

    A finished cell is reused only when everything that made it matches (its fingerprint, and the generation it
    read); otherwise the grid stops with an error naming the difference, or, with ``force``, redoes the cell.
    ``max_cost`` covers the whole grid, earlier sessions included; ``max_errors`` the failed calls of this
    session over all cells."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "grid.json", {"grid": asdict(grid), "updated": now_iso()})
    cells = grid.cells()
    finished = sum((grid.folders(out, spec)[0] / "result.json").exists() for spec in cells)
    logger.info("grid: %d cells, %d finished, %d to run", len(cells), finished, len(cells) - finished)
    datasets: dict[str, Dataset] = {}
    failed = 0
    with lm or LazyLM(_lm_settings(grid)) as handle:
        for i, spec in enumerate(cells, start=1):
            row, ran = _run_cell(grid, _with_budget(spec, out, failed), out, handle, datasets, force,
                                 f"{i}/{len(cells)}")
            failed += ((row or {}).get("llm") or {}).get("failed_units", 0) if ran else 0
    return collect_results(grid, out)


def _lm_settings(grid: GridSpec):
    return grid.cells()[0].lm_settings()


def _with_budget(spec: ExperimentSpec, out: Path, failed: int) -> ExperimentSpec:
    """The cell's spec with what is left of the grid's error allowance."""
    if spec.max_errors is None:
        return spec
    return dataclasses.replace(spec, max_errors=max(0, spec.max_errors - failed))


def spent(folders: list[Path]) -> float:
    """USD spent by the LLM calls journaled in these folders (unknown prices count 0)."""
    paths = [p for f in folders if f and f.exists() for p in f.glob("*.jsonl")]
    return journal_usage(paths)["cost_usd"] or 0.0


def _run_cell(grid: GridSpec, spec: ExperimentSpec, out: Path, lm: LazyLM, datasets: dict[str, Dataset],
              force: bool, where: str) -> tuple[dict | None, bool]:
    """(the cell's row or None when it failed, whether it ran in this session)."""
    folder, gen = grid.folders(out, spec)
    teacher = teacher_dir(grid.llm_root(out), spec)
    if spec.dataset not in datasets:
        datasets[spec.dataset] = load_dataset(spec.dataset, data_dir=spec.data_dir)
    if (folder / "result.json").exists() and not force:  # checks the settings and the data; retrains a stale cell
        row = run_experiment(spec, folder, lm, generation_dir=gen, teacher_dir=teacher, dataset=datasets[spec.dataset])
        return row, False
    logger.info("cell %s: %s / %s / seed %d", where, spec.dataset, spec.method, spec.seed)
    elsewhere = spent(_all_folders(out)) - spent([folder, gen] if gen else [folder])
    try:
        row = run_experiment(spec, folder, lm, generation_dir=gen, teacher_dir=teacher,
                             dataset=datasets[spec.dataset], spent_elsewhere=elsewhere, force=force)
        (folder / "error.txt").unlink(missing_ok=True)
        return row, True
    except (RunStopped, KeyboardInterrupt, SpecMismatch, RunMismatch):
        raise
    except Exception:  # one broken cell must not lose the rest of the grid: log it, the next run retries
        logger.error("cell %s failed (left unfinished):\n%s", folder, traceback.format_exc())
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return None, True


def _all_folders(out: Path) -> list[Path]:
    return [p for p in [*out.glob("cells/*/*/seed*"), *out.glob("generations/*/seed*/*")] if p.is_dir()]


def adopt_cells(grid: GridSpec, out: str | Path, source: str | Path) -> dict[str, int]:
    """Take finished cells from a results.jsonl (a committed report's) into ``out``, so that a fresh clone or a
    lost run folder resumes the grid instead of redoing it. A row is taken only for a cell of this grid that is
    not finished in ``out`` and whose settings are exactly the cell's (the fingerprint the grid would check);
    a row of this grid made with other settings stops the adoption before anything is written, naming the line
    and the difference. Only the row comes back, not the cell's files (the report keeps what an earlier report
    drew from them: report._has_every_generation). Returns counts: adopted, already finished, not in this grid."""
    out, source = Path(out), Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"--adopt {source}: no such file (a grid report's results.jsonl)")
    cells = {(s.dataset, s.method, s.seed): s for s in grid.cells()}
    todo, taken, counts = [], set(), {"adopted": 0, "finished": 0, "other": 0}
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
            key = (row["dataset"], row["method"], int(row["seed"]))
            config = row["config"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a result row (JSON with dataset, method, seed, config): {exc}") from exc
        spec = cells.get(key)
        if spec is None:
            counts["other"] += 1
            continue
        folder = grid.folders(out, spec)[0]
        if (folder / "result.json").exists() or folder in taken:  # a repeated row: the first one is taken
            counts["finished"] += 1
            continue
        if "inputs" not in row:
            raise SpecMismatch(f"{where}: {key[0]} / {key[1]} / seed {key[2]} records no input identity (a row made "
                               f"before rows recorded what they read): it cannot be paired, so it is not adopted; "
                               f"nothing was adopted")
        if config != spec.fingerprint():
            raise SpecMismatch(f"{where}: {key[0]} / {key[1]} / seed {key[2]} was made with other settings than "
                               f"this grid's ({diff_settings(config, spec.fingerprint())}); nothing was adopted")
        started = folder / "experiment.json"
        if started.exists() and read_json(started)["spec"] != config:
            raise SpecMismatch(f"{where}: {started} holds a started cell with other settings; nothing was adopted")
        todo.append((folder, row, where))
        taken.add(folder)
    for folder, row, where in todo:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / "experiment.json", {"spec": row["config"], "versions": row.get("versions"),
                                                       "updated": now_iso()})
        atomic_write_json(folder / ADOPTED, {"from": where, "adopted": now_iso()})
        atomic_write_json(folder / "result.json", row)
        counts["adopted"] += 1
    logger.info("adopted %d cell(s) from %s (%d already finished here, %d rows of other cells)",
                counts["adopted"], source, counts["finished"], counts["other"])
    return counts


def collect_results(grid: GridSpec, out: str | Path) -> list[dict]:
    """The finished cells' rows in grid order, written to out/results.jsonl."""
    out = Path(out)
    rows = [read_json(grid.folders(out, s)[0] / "result.json") for s in grid.cells()
            if (grid.folders(out, s)[0] / "result.json").exists()]
    atomic_write_jsonl(out / "results.jsonl", rows)
    missing = len(grid.cells()) - len(rows)
    failed = sum((grid.folders(out, s)[0] / "error.txt").exists() and not (grid.folders(out, s)[0] /
                                                                           "result.json").exists()
                 for s in grid.cells())
    if missing:
        logger.warning("%d of %d cells are unfinished (%d failed: see error.txt in their folders; the rest not "
                       "run yet); re-run to finish them", missing, len(grid.cells()), failed)
    return rows
