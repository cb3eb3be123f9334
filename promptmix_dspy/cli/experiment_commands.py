"""``promptmix run`` (one experiment) and ``promptmix bench`` (the grid): the paper's table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from promptmix_dspy.cli.common import guarded, setup_logging
from promptmix_dspy.cli.options import BudgetOptions, DryRun, Force, LMOptions, Seed, SpecOptions, Verbose, with_groups

__all__ = ["bench", "run"]

def _methods_help() -> str:
    from promptmix_dspy.experiments.methods import METHODS

    return ", ".join(METHODS) + " (promptmix_dspy/experiments/methods.py says what each is)"


METHODS_HELP = _methods_help()
SpecFile = Annotated[Optional[Path], typer.Option("--config", "-c", help="Experiment spec (TOML, e.g. "
                                                  "evals/trec6.toml); flags override it.")]


@with_groups
def run(*, config: SpecFile = None,
        dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset (overrides the spec).")] = None,
        method: Annotated[Optional[str], typer.Option("--method", "-m", help=f"One of: {METHODS_HELP}.")] = None,
        seed: Seed = None,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/<dataset>-"
                                                    "<method>-seed<k>); re-running it redoes no finished step.")] = None,
        spec: SpecOptions, lm: LMOptions, budget: BudgetOptions, dry_run: DryRun = False, force: Force = False,
        verbose: Verbose = False) -> None:
    """One experiment: few-shot split -> descriptions -> generate -> relabel -> train -> evaluate, in one folder."""
    setup_logging(verbose)
    from promptmix_dspy.experiments.experiment import run_experiment
    from promptmix_dspy.experiments.grid import GridSpec
    from promptmix_dspy.experiments.spec import ExperimentSpec, dataset_key, load_spec

    with guarded(out, "every finished step"):
        overrides = {"dataset": dataset, "method": method, "seed": seed, **spec.overrides(lm, budget)}
        cell = load_spec(config, **overrides) if config else ExperimentSpec(**_required(overrides, "dataset"))
        if dry_run:
            base = {k: v for k, v in vars(cell).items() if k not in ("dataset", "method", "seed")}
            return _print_estimate(GridSpec([cell.dataset], [cell.method], [cell.seed], base))
        out = out or Path("runs") / f"{dataset_key(cell.dataset)}-{cell.method}-seed{cell.seed}"
        row = run_experiment(cell, out, force=force)
    _print_row(row, out)


def _required(overrides: dict, name: str) -> dict:
    if overrides.get(name) is None:
        raise ValueError(f"give --config FILE or --{name}")
    return {k: v for k, v in overrides.items() if v is not None}


def _print_estimate(grid) -> None:
    from promptmix_dspy.experiments.estimate import estimate_grid, format_estimate

    typer.echo(format_estimate(estimate_grid(grid), grid.cells()[0].lm_settings().model))


def _print_row(row: dict, out: Path) -> None:
    from promptmix_dspy.experiments.report import format_cost

    typer.echo(f"{row['dataset']} / {row['method']} / seed {row['seed']}: accuracy {row['accuracy']:.4f}, "
               f"macro-F1 {row['macro_f1']:.4f} on {row['n_test']} test texts")
    typer.echo(format_cost(row))
    typer.echo(f"wrote {out / 'result.json'} and {out / 'eval'}")


def _csv(text: Optional[str], cast: type = str) -> Optional[list]:
    return [cast(x.strip()) for x in text.split(",") if x.strip()] if text else None


@with_groups
def bench(*, out: Annotated[Path, typer.Option("--out", "-o", help="Grid folder; re-running skips finished cells.")],
          config: SpecFile = None,
          datasets: Annotated[Optional[str], typer.Option("--datasets", help="Comma-separated: trec6,subj,banking77,"
                                                          "twitter_complaints (or dataset paths).")] = None,
          methods: Annotated[Optional[str], typer.Option("--methods", help=f"Comma-separated rows: "
                                                         f"{METHODS_HELP}.")] = None,
          seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated seeds (default "
                                                       "0,1,2).")] = None,
          report_dir: Annotated[Optional[Path], typer.Option("--report-dir", help="Write results.{jsonl,md} and the "
                                "plots here instead of OUT (e.g. evals/results/NAME to commit them).")] = None,
          report_only: Annotated[bool, typer.Option("--report-only", help="Write the report of the cells finished so "
                                 "far (pending ones shown as pending) and run nothing.")] = False,
          adopt: Annotated[Optional[list[Path]], typer.Option("--adopt", help="A results.jsonl (e.g. the committed "
                           "evals/results/NAME/results.jsonl) whose finished cells this grid takes instead of redoing "
                           "them, when made with exactly this grid's settings (repeatable).")] = None,
          spec: SpecOptions, lm: LMOptions, budget: BudgetOptions, dry_run: DryRun = False, force: Force = False,
          verbose: Verbose = False) -> None:
    """The paper's table: datasets x methods x seeds, then results.{jsonl,md} and plots in OUT."""
    setup_logging(verbose)
    import shlex
    import sys

    from promptmix_dspy.experiments.grid import adopt_cells, collect_results, load_grid, run_grid
    from promptmix_dspy.experiments.report import write_grid_report

    with guarded(out, "every finished cell"):
        grid = load_grid(config, datasets=_csv(datasets), methods=_csv(methods), seeds=_csv(seeds, int),
                         **spec.overrides(lm, budget))
        if dry_run:
            return _print_estimate(grid)
        for source in adopt or []:
            counts = adopt_cells(grid, out, source)
            typer.echo(f"{source}: adopted {counts['adopted']} finished cell(s), {counts['finished']} already "
                       f"finished in {out}, {counts['other']} row(s) of cells outside this grid")
        rows = collect_results(grid, out) if report_only else run_grid(grid, out, force=force)
        paths = write_grid_report(grid, out, rows, shlex.join(["promptmix", *sys.argv[1:]]), report_dir)
    typer.echo(paths["table"])
    typer.echo(f"wrote {', '.join(str(p) for p in paths['files'])}")
