"""What compile bought the student: a2 vs a2c per seed, from finished benchmark cells, into the compile-gain table.

compile_gain.py scores the programs on dev (and a test subsample, reported only); the question a user asks next
is whether the student trained on the compiled programs' data is better. This script reads it from the grids
(no LLM call): per seed, the student's test accuracy with the uncompiled programs (a2) and the compiled ones
(a2c), in each grid given, and per generation the seed-copy share, kept texts per generation call, how many
texts the relabeler moved to another class, and relabel tokens per final example. It writes that as a section of
evals/results/compile_gain_<dataset>.md, between markers, so running it again replaces the section and leaves
the rest of the table as compile_gain.py wrote it.

    python evals/compile_students.py --dataset trec6 --table evals/results/compile_gain_trec6.md \\
        --grid "300-step students=evals/results/bench_qwen2.5-coder-1.5b_300steps" \\
        --grid "authors' students=evals/results/bench_qwen2.5-coder-1.5b" --generations runs/bench_qwen

A --grid folder is a grid report's (its results.jsonl holds every finished cell: `promptmix bench --report-only`
rewrites it); --generations is the grid's output folder, where the generated data lives.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from promptmix_dspy.experiments.grid import ADOPTED
from promptmix_dspy.experiments.spec import dataset_key
from promptmix_dspy.experiments.summary import generation_stats
from promptmix_dspy.store.files import atomic_write_text, read_journal

BEGIN = "<!-- students: made by evals/compile_students.py; re-run it to refresh -->"
END = "<!-- /students -->"
GENERATIONS = {"a2": "mix", "a2c": "compiled"}
CACHE_NOTE = ("Where the kept generator is the uncompiled one, a2c's generation calls are the very same requests as "
              "a2's and come from the response cache: both rows train on the same texts, and the difference is the "
              "relabeler's.")


def _grid_rows(folder: Path, key: str) -> dict[tuple[str, int], float]:
    rows = read_journal(folder / "results.jsonl")
    return {(r["method"], r["seed"]): r["accuracy"] for r in rows
            if dataset_key(r["dataset"]) == key and r["method"] in GENERATIONS}


def students_section(key: str, grids: list[tuple[str, Path]], generations: Path, earlier: str = "") -> list[str]:
    """The section's lines. ``earlier``: the table's text as it stands; a generation row it holds is kept where
    the run folder no longer has that generation, or where the cell was adopted (`promptmix bench --adopt`: a
    generation in the run folder was made after it, so it is not the one the cell read)."""
    kept = {tuple(line.split(" | ")[:2]): line for line in earlier.split(BEGIN, 1)[-1].split(END, 1)[0].splitlines()
            if BEGIN in earlier and line.startswith("| ") and line.count(" | ") == 7 and "| pending |" not in line}
    accuracy = {name: _grid_rows(folder, key) for name, folder in grids}
    seeds = sorted({seed for rows in accuracy.values() for _, seed in rows})
    lines = [BEGIN, "", "## The student: a2 (uncompiled programs) vs a2c (programs/" + key + ")", ""]
    if not seeds:
        return lines + ["No a2 or a2c cell of this dataset is finished yet.", "", END]
    lines += ["Test accuracy (%) of the student, the whole test set; a seed missing a cell says pending.", "",
              "| students | seed | a2 | a2c | a2c - a2 |", "|---|---:|---:|---:|---:|"]
    for name, rows in accuracy.items():
        diffs = []
        for seed in seeds:
            a2, a2c = rows.get(("a2", seed)), rows.get(("a2c", seed))
            diff = "–"
            if a2 is not None and a2c is not None:
                diffs.append(100 * (a2c - a2))
                diff = f"{diffs[-1]:+.1f}"
            lines.append(f"| {name} | {seed} | {_pct(a2)} | {_pct(a2c)} | {diff} |")
        if len(diffs) > 1:
            lines.append(f"| {name} | mean of {len(diffs)} | | | {statistics.fmean(diffs):+.1f} "
                         f"± {statistics.stdev(diffs):.1f} |")
    lines += ["", "The generated data behind them (the grid's generations; written texts are the generator's, "
              "before clean-up):", "",
              "| seed | programs | generation calls | written | seed copies | kept per call | relabeled to "
              "another class | relabel tokens per final example |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    cached = False
    for seed in seeds:
        for method, folder_name in GENERATIONS.items():
            folder = generations / "generations" / key / f"seed{seed}" / folder_name
            # an adopted cell's generation may be missing, or made again since (a new sample, not its texts)
            adopted = (generations / "cells" / key / method / f"seed{seed}" / ADOPTED).is_file()
            if (adopted or not (folder / "augmented.jsonl").is_file()) and (f"| {seed}", method) in kept:
                lines.append(kept[(f"| {seed}", method)])
                cached |= CACHE_NOTE in earlier  # the kept rows are the ones that note was written for
                continue
            if not (folder / "augmented.jsonl").is_file():
                lines.append(f"| {seed} | {method} | pending | | | | | |")
                continue
            stats = generation_stats(folder)
            cached |= stats["generate_calls"] > 0 and stats["generate_tokens_per_example"] == 0
            relabel = stats["tokens_per_example"] - stats["generate_tokens_per_example"]
            lines.append(f"| {seed} | {method} | {stats['generate_calls']} | {stats['written']} | "
                         f"{stats['seed_copy_share']:.0%} | {stats['kept_per_call']:.2f} | "
                         f"{stats['relabeled_share']:.0%} | {relabel:.0f} |")
    if cached:
        lines += ["", CACHE_NOTE]
    return lines + ["", END]


def _pct(value: float | None) -> str:
    return "pending" if value is None else f"{100 * value:.1f}"


def write_section(table: Path, section: list[str]) -> None:
    text = table.read_text(encoding="utf-8") if table.is_file() else ""
    if BEGIN in text:
        if END not in text:
            raise SystemExit(f"{table}: has {BEGIN!r} but no {END!r}; mend the file by hand")
        head, rest = text.split(BEGIN, 1)
        text = head.rstrip("\n") + "\n\n" + "\n".join(section) + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    atomic_write_text(table, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--table", required=True, type=Path, help="the compile-gain Markdown file to add to")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=FOLDER",
                        help="a grid report folder (with results.jsonl) and what to call its students")
    parser.add_argument("--generations", type=Path, default=Path("runs/bench_qwen"),
                        help="the grid folder holding generations/<dataset>/seed<k>/{mix,compiled}")
    args = parser.parse_args(argv)
    grids = []
    if not args.grid:
        parser.error("give at least one --grid NAME=FOLDER")
    for item in args.grid:
        name, sep, folder = item.rpartition("=")
        if not sep or not name:
            parser.error(f"--grid {item!r}: expected NAME=FOLDER")
        if not (Path(folder) / "results.jsonl").is_file():
            parser.error(f"--grid {item!r}: {folder}/results.jsonl not found (write the report first: "
                         "promptmix bench ... --report-only --report-dir FOLDER)")
        grids.append((name, Path(folder)))
    earlier = args.table.read_text(encoding="utf-8") if args.table.is_file() else ""
    section = students_section(dataset_key(args.dataset), grids, args.generations, earlier)
    write_section(args.table, section)
    print("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
