"""The grid's report: the results table (mean ± std over seeds), the cost per cell, and the plots.

``write_grid_report(grid, out, rows)`` writes results.md beside results.jsonl, with accuracy.png (accuracy by
method and dataset) and, per dataset with a PromptMix generation, boundary_<dataset>.png (a 2-D projection of
sentence embeddings: train texts as class clusters, the seeds, and the generated texts coloured by final label)
and labels_<dataset>.png (generated_for -> final label); for each finished second-round cell (a2fb) the class
pairs round 2 was aimed at, their disagreement with the LLM on the held-out probe texts before and after, and the
cell's confusion plot copied in as confusion_<dataset>_seed<k>.png. Standard deviations are sample ones (n - 1).
"""

from __future__ import annotations

import logging
import shutil
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from promptmix_dspy.experiments.claims import RULE, claims_section
from promptmix_dspy.method.contamination import RULE as CONTAMINATION_RULE
from promptmix_dspy.experiments.methods import DEV_PER_CLASS, METHODS
from promptmix_dspy.experiments.spec import dataset_key
from promptmix_dspy.experiments.summary import summarize
from promptmix_dspy.store.files import atomic_write_jsonl, atomic_write_text

if TYPE_CHECKING:
    from promptmix_dspy.experiments.grid import GridSpec

__all__ = ["STAGES", "cost_table", "format_cost", "results_table", "second_round_section", "write_grid_report"]

logger = logging.getLogger(__name__)
STAGES = ("describe", "generate", "relabel", "teacher", "train", "evaluate")
LLM_STAGES = ("describe", "generate", "relabel", "teacher")  # timed as seconds summed over calls


def results_table(rows: Sequence[dict], datasets: Sequence[str], methods: Sequence[str],
                  metric: str = "accuracy", seeds: int | None = None, planned=None) -> str:
    """Markdown: one row per method, one column per dataset, cells 'mean [95% interval]' in percent (or
    'mean ± std' when ``planned`` is None and ``seeds`` is given: the older form); a cell with fewer finished
    seeds than planned says how many, one with none says pending, one outside the protocol says so.
    ``planned(dataset, method) -> list of seeds``, by default every seed of ``seeds``."""
    stats = summarize(rows, metric)
    lines = ["| method | " + " | ".join(dataset_key(d) for d in datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for method in methods:
        cells = [_cell(stats.get((d, method)), len(planned(d, method)) if planned else seeds, planned is not None)
                 for d in datasets]
        extra = f" (uses {DEV_PER_CLASS} more labelled texts per class)" if METHODS[method].dev else ""
        lines.append(f"| **{method}**: {METHODS[method].summary}{extra} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(stat: dict | None, seeds: int | None = None, intervals: bool = False) -> str:
    if seeds == 0:
        return "not in this protocol"
    if stat is None:
        return "pending"
    if intervals and stat.get("interval"):
        low, high = stat["interval"]
        text = f"{100 * stat['mean']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
    else:
        text = f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}" if stat["n"] > 1 else f"{100 * stat['mean']:.1f}"
    if seeds and stat["n"] < seeds:
        return f"{text} ({stat['n']} of {seeds} seeds; the rest pending)"
    return text if stat["n"] > 1 or seeds == 1 else f"{text} (n=1)"


def contamination_table(rows: Sequence[dict], datasets: Sequence[str]) -> list[str]:
    """Markdown: per dataset, generation and seed, the generated texts found among the test texts and removed."""
    seen, lines = set(), ["| dataset | generation | seed | texts checked | exact | near | removed |",
                          "|---|---|---:|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: (r["dataset"], METHODS[r["method"]].generation or "", r["seed"])):
        record, generation = row.get("contamination"), METHODS[row["method"]].generation
        key = (row["dataset"], generation, row["seed"])
        if not record or not record.get("checked") or key in seen or row["dataset"] not in datasets:
            continue
        seen.add(key)
        lines.append(f"| {dataset_key(row['dataset'])} | {generation} | {row['seed']} | {record['texts']} | "
                     f"{record['exact']} | {record['near']} | {record['removed']} |")
    return lines if len(lines) > 2 else []


def teacher_sample_table(rows: Sequence[dict], datasets: Sequence[str], methods: Sequence[str]) -> list[str]:
    """Markdown: every method's mean accuracy on the teacher's own sample of test texts, next to the teacher."""
    lines = ["| method | " + " | ".join(dataset_key(d) for d in datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for method in methods:
        cells = []
        for d in datasets:
            values = [(r.get("teacher_sample") or {}).get("accuracy") if not METHODS[method].teacher else r["accuracy"]
                      for r in rows if r["dataset"] == d and r["method"] == method]
            values = [v for v in values if v is not None]
            cells.append(f"{100 * statistics.fmean(values):.1f} ({len(values)})" if values else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def cost_table(rows: Sequence[dict], datasets: Sequence[str], methods: Sequence[str]) -> str:
    """Markdown: LLM calls, tokens, price and seconds per stage for each (dataset, method), mean over seeds."""
    head = ["dataset", "method", "seeds", "LLM calls", "prompt tokens", "completion tokens",
            "tokens served from cache", "price (USD)",
            *[f"{s} {'call-s' if s in LLM_STAGES else 's'}" for s in STAGES]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for d in datasets:
        for m in methods:
            cell = [r for r in rows if r["dataset"] == d and r["method"] == m]
            if cell:
                lines.append("| " + " | ".join([dataset_key(d), m, str(len(cell)), *_cost_cells(cell)]) + " |")
    return "\n".join(lines)


def _cost_cells(cell: list[dict]) -> list[str]:
    llm = [r.get("llm") or {} for r in cell]
    out = [_mean_int([x.get(k, 0) for x in llm]) for k in ("llm_calls", "prompt_tokens", "completion_tokens")]
    served = [x["cache_served_tokens"] for x in llm if x.get("cache_served_tokens") is not None]
    out.append(_mean_int(served) if served else "–")
    prices = [x.get("cost_usd") for x in llm if x]
    out.append("–" if not prices else "n/a" if None in prices else f"{statistics.fmean(prices):.4f}")
    for stage in STAGES:
        secs = [s for s in (_stage_seconds(r, stage) for r in cell) if s is not None]
        out.append(f"{statistics.fmean(secs):.0f}" if secs else "–")
    return out


def _stage_seconds(row: dict, stage: str) -> float | None:
    """Train/evaluate: wall seconds. LLM stages: seconds summed over calls (older rows: session wall time)."""
    timing = row.get("llm_call_seconds") if stage in LLM_STAGES and row.get("llm_call_seconds") else row.get("seconds")
    return (timing or {}).get(stage)


def _mean_int(values: list[int]) -> str:
    return f"{statistics.fmean(values):.0f}" if any(values) else "0"


def format_cost(row: dict) -> str:
    """One cell's cost in a line: LLM calls, tokens, price, seconds per stage."""
    llm = row.get("llm") or {}
    price = llm.get("cost_usd")
    price_text = "no LLM" if not llm else "n/a (not in litellm's price table)" if price is None else f"${price:.4f}"
    stages = ", ".join([*(f"{k} {v:.0f}s" for k, v in (row.get("seconds") or {}).items() if k not in LLM_STAGES),
                        *(f"{k} {v:.0f} call-s" for k, v in (row.get("llm_call_seconds") or {}).items())])
    return (f"LLM calls {llm.get('llm_calls', 0)}, tokens {llm.get('prompt_tokens', 0)} prompt + "
            f"{llm.get('completion_tokens', 0)} completion, price {price_text}; {stages}")


# ----------------------------------------------------------------------------------------------------------
# The report


READING = "reading.md"  # a hand-written reading of the numbers in the report folder, shown below the claims


def write_grid_report(grid: "GridSpec", out: str | Path, rows: Sequence[dict], command: str = "",
                      report_dir: str | Path | None = None) -> dict:
    """Write results.{jsonl,md} and the plots of the grid in out into report_dir (default: out itself).

    Returns {"table": the markdown accuracy table, "files": the paths written}."""
    out, dest = Path(out), Path(report_dir or out)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(dest / "results.jsonl", rows)
    llm_root = Path(grid.share_llm_from) if grid.share_llm_from else out
    generations = {dataset: _generations(llm_root, dataset_key(dataset), grid.seeds) for dataset in grid.datasets}
    earlier = (dest / "results.md").read_text(encoding="utf-8") if (dest / "results.md").is_file() else ""
    kept = {}  # dataset -> the examples an earlier report drew, where redrawing would narrow them (adopted cells)
    for dataset, gens in generations.items():
        if not _has_every_generation(rows, dataset, gens, out) and (lines := _earlier_examples(earlier, dataset)):
            kept[dataset] = lines
    second, second_files = second_round_section(rows, out, dest)
    files = [dest / "results.jsonl", dest / "results.md", *_plots(grid, generations, dest, rows, set(kept)),
             *second_files]
    table = results_table(rows, grid.datasets, grid.methods, planned=grid.planned_seeds)
    examples = [line for dataset, gens in generations.items()
                for line in (kept[dataset] if dataset in kept else examples_table(dataset, gens[0]) if gens else [])]
    reading = dest / READING
    reading = reading.read_text(encoding="utf-8").strip().splitlines() if reading.is_file() else []
    atomic_write_text(dest / "results.md", _markdown(grid, rows, table, command, files, examples, reading, second))
    return {"table": table, "files": files}


def examples_table(dataset: str, gen_dir: Path, per_class: int = 2, width: int = 110) -> list[str]:
    """Markdown: the first generated texts of each class in one generation, with their mix and final label."""
    from promptmix_dspy.experiments.plots import read_jsonl_rows

    shown: dict[str, int] = defaultdict(int)
    where = f"{dataset_key(dataset)} {Path(gen_dir).parent.name}"
    lines = [f"Generated texts, {where} (the first {per_class} per class):",
             "", "| generated for | mixed with | majority share | final label | text |", "|---|---|---:|---|---|"]
    for row in read_jsonl_rows(Path(gen_dir) / "augmented.jsonl"):
        if shown[row["generated_for"]] < per_class:
            shown[row["generated_for"]] += 1
            text = " ".join(row["text"].split()).replace("|", "\\|")
            text = text if len(text) <= width else text[: width - 1] + "…"
            lines.append(f"| {row['generated_for']} | {row.get('minority') or '–'} | {row.get('majority_share', '')} "
                         f"| {row['label']} | {text} |")
    return lines + [""]


def _earlier_examples(markdown: str, dataset: str) -> list[str]:
    """The examples table an earlier report printed for this dataset: its cells were adopted and their
    generations are not in the run folder (the table's first line names the seed it was drawn from)."""
    lines, kept = markdown.splitlines(), []
    title = f"Generated texts, {dataset_key(dataset)} seed"
    start = next((i for i, line in enumerate(lines) if line.startswith(title)), None)
    if start is None:
        return []
    for line in lines[start:]:
        if kept and not line.strip() and kept[-1].startswith("|"):
            break
        kept.append(line)
    return kept + [""]


def second_round_section(rows: Sequence[dict], out: Path, dest: Path) -> tuple[list[str], list[Path]]:
    """Markdown for the second-round cells (a2fb), one row each, and their confusion plots copied into dest.

    A pair reads "true -> predicted before -> after": the share of the held-out probe texts the LLM put in the
    true class that the student put in the predicted one, for the round-1 student and for the retrained one."""
    from promptmix_dspy.experiments.grid import cell_path

    cells = sorted((r for r in rows if r.get("second_round")), key=lambda r: (r["dataset"], r["method"], r["seed"]))
    if not cells:
        return [], []
    lines = ["Pairs: the LLM's class -> the student's, the student's disagreement on the held-out probe texts "
             "with the round-1 student -> after round 2 (held-out texts are few: a rate is a count over a handful; n/a: "
             "no held-out text has that LLM class).",
             "", "| dataset | method | seed | round-2 rows | held-out probe texts | pairs aimed at | plot |",
             "|---|---|---:|---:|---:|---|---|"]
    files = []
    for row in cells:
        second, key = row["second_round"], dataset_key(row["dataset"])
        after = {(p["true"], p["predicted"]): _rate(p["rate"]) for p in second.get("pair_rates_after") or []}
        pairs = "; ".join(f"{p['true']} -> {p['predicted']} {_rate(p['rate'])} -> "
                          + after.get((p["true"], p["predicted"]), "?") for p in second.get("pairs") or []) or "–"
        source = cell_path(out, row["dataset"], row["method"], row["seed"]) / "feedback" / "confusion.png"
        plot, target = "–", dest / f"confusion_{key}_seed{row['seed']}.png"
        if source.is_file() and source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        if target.is_file():  # copied now, or by an earlier report of this cell (an adopted cell has no files)
            files.append(target)
            plot = f"[{target.name}]({target.name})"
        lines.append(f"| {key} | {row['method']} | {row['seed']} | {second.get('rows', '–')} | "
                     f"{second.get('held_out', '–')} | {pairs} | {plot} |")
    return lines + [""], files


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.2f}"


def _plots(grid: "GridSpec", generations: dict[str, list[Path]], dest: Path, rows: Sequence[dict],
           kept: set[str] = frozenset()) -> list[Path]:
    """accuracy.png, and per dataset the boundary picture and the label matrix, drawn from the generations at
    hand; for a dataset in ``kept`` the ones an earlier report drew stay (see _has_every_generation)."""
    from promptmix_dspy.experiments.plots import plot_accuracy, plot_boundary, plot_budget, plot_label_matrix

    files = [plot_accuracy(rows, grid.datasets, grid.methods, dest / "accuracy.png")] if rows else []
    budget = plot_budget(rows, grid.datasets, dest / "budget.png") if rows else None
    files += [budget] if budget else []
    for dataset, gens in generations.items():
        key = dataset_key(dataset)
        earlier = [f for f in (dest / f"boundary_{key}.png", dest / f"labels_{key}.png") if f.is_file()]
        if dataset in kept and earlier:
            files += earlier
        elif gens:
            files.append(plot_boundary(dataset, gens[0], grid.base.get("data_dir"), dest / f"boundary_{key}.png"))
            files.append(plot_label_matrix(key, gens, dest / f"labels_{key}.png"))
    return files


def _has_every_generation(rows: Sequence[dict], dataset: str, gens: list[Path], out: Path) -> bool:
    """Whether the run folder holds the mix generation of every seed whose finished cells read one. Cells adopted
    from a committed report (grid.adopt_cells) bring back their rows, not their files: redrawing from the
    generations at hand would then narrow the plots and examples to fewer seeds than the table, so the ones an
    earlier report drew from all of them stay (their titles name the seeds). A seed whose mix cell was adopted
    counts as missing even where its generation is here: it was made again after (a new sample, not the texts
    that cell trained on)."""
    from promptmix_dspy.experiments.grid import ADOPTED, cell_path

    readers = [r for r in rows
               if r["dataset"] == dataset and getattr(METHODS.get(r["method"]), "generation", None) == "mix"]
    adopted = {r["seed"] for r in readers
               if (cell_path(out, r["dataset"], r["method"], r["seed"]) / ADOPTED).is_file()}
    return {r["seed"] for r in readers} <= {int(g.parent.name.removeprefix("seed")) for g in gens} - adopted


def _generations(out: Path, key: str, seeds: Sequence[int]) -> list[Path]:
    """The finished mix generations of a dataset, first seed first."""
    folders = [out / "generations" / key / f"seed{s}" / "mix" for s in seeds]
    return [f for f in folders if (f / "augmented.jsonl").exists()]


def _markdown(grid: "GridSpec", rows: Sequence[dict], table: str, command: str, files: list[Path],
              examples: list[str], reading: list[str] = (), second: list[str] = ()) -> str:
    seeds = ", ".join(str(s) for s in grid.seeds)
    parts = [f"# PromptMix benchmark: {', '.join(dataset_key(d) for d in grid.datasets)}", "",
             f"Test accuracy (%), mean over seeds {seeds} and its 95% interval (Student's t over the seeds, "
             f"scipy.stats). Numbers as they came from one run; nothing was tuned on the test sets. A cell not yet "
             f"run says pending; one with fewer seeds than planned says how many; one the spec leaves out says "
             f"so ([grid.limits]).", "", table, "",
             "Macro-F1 (%):", "", results_table(rows, grid.datasets, grid.methods, "macro_f1",
                                               planned=grid.planned_seeds), "",
             "## The paper's claims, checked against these numbers", "",
             f"Verdicts from test accuracy. {RULE} (promptmix_dspy/experiments/claims.py)", "",
             *claims_section(rows, grid.datasets, grid.methods), "",
             "## Students and teacher on the same texts", "",
             "Mean test accuracy (%) on the teacher's own sample of test texts (a fixed seeded sample where the test "
             "set is larger than the teacher's limit), over the seeds finished (in brackets): the teacher-gap "
             "claims above use these figures.", "", *teacher_sample_table(rows, grid.datasets, grid.methods), "",
             "## Contamination: generated texts that are test texts", "",
             f"Every generation's kept texts checked against the dataset's whole test split ({CONTAMINATION_RULE}); "
             "the texts found were removed before relabeling, so no student trained on them.", "",
             *(contamination_table(rows, grid.datasets) or ["No generation checked yet."]), "",
             *([f"## Reading (by hand, from {READING}, as of the cells finished when it was written)", "", *reading, ""]
               if reading else []),
             "## Settings", "", *_settings(grid, rows), "",
             "## Generated data", "", *_generation_lines(rows), "", *examples,
             *(["## The second round (a2fb): where it was aimed", "", *second] if second else []),
             "## Cost per cell (mean over seeds)", "",
             "a1 is charged only the describe and generate calls of the generation it shares with a2; a2 is "
             "charged all of it. LLM stages (call-s): seconds summed over the stage's calls, resumed sessions "
             "included (with N requests in flight the wall time is about 1/N of it); train and evaluate: wall "
             "seconds. Price: litellm's price table, n/a for a model it does not list (a local model). A call served "
             "from the response cache (the very request an earlier cell made: a2c's generation where the kept "
             "generator is the uncompiled one, a2x's first calls, which are a2's) costs nothing and is not in the "
             "prompt and completion tokens; what those answers cost when first made is in *tokens served from "
             "cache* (the cell's cost had it run alone is the sum; – for cells made before it was recorded).", "",
             cost_table(rows, grid.datasets, grid.methods), "", "## Plots", ""]
    parts += [f"![{p.stem}]({p.name})" for p in files if p.suffix == ".png"]
    finished = len({(r["dataset"], r["method"], r["seed"]) for r in rows}), len(grid.cells())
    parts += ["", f"Cells finished: {finished[0]} of {finished[1]}. Reproduce: `{command or 'promptmix bench ...'}`"]
    return "\n".join(parts) + "\n"


def _settings(grid: "GridSpec", rows: Sequence[dict]) -> list[str]:
    spec = grid.cells()[0]
    train = spec.train_config()
    lm = next((r["lm"] for r in rows if r.get("lm")), None)
    versions = rows[0]["versions"] if rows else {}
    teacher_texts = ("the whole test set" if spec.teacher_test_limit is None else f"at most "
                     f"{spec.teacher_test_limit} test texts: a fixed seeded sample where the test set is larger")
    return [f"- LLM: {_describe_lm(lm, spec.lm)}",
            f"- Few-shot: {spec.shots} seed examples per class (baseline5: 5), drawn by seed from train.",
            f"- Generation: up to {spec.per_class} kept per class, {spec.texts_per_call} texts per call, groups of "
            f"{spec.group_size} classes, majority share 0.5 + 0.5·Beta(5, 2) rounded to 0.05 (nomix: 1.0), up to "
            f"{spec.max_rounds} round{'s' if spec.max_rounds != 1 else ''}; relabeling offers the top {spec.top_k} "
            f"classes by MiniLM similarity.",
            f"- Student: {train.student}, {train.epochs} epochs"
            f"{f' (or more, for at least {train.min_steps} optimizer steps)' if train.min_steps else ''}, batch "
            f"{train.batch_size}, lr {train.lr}, weight decay {train.weight_decay}, warmup {train.warmup_ratio}, "
            f"max length {train.max_length}; the same for every method (Banking77: the authors' lr 6e-5 and "
            f"weight decay 0.001).",
            f"- llm (the teacher) labels {teacher_texts}; students are scored on the whole test set.",
            f"- eda: synonym replacement, random insertion, swap and deletion (alpha 0.1), {spec.per_class} new "
            f"texts per class (as many as the generation asks for); synonyms are the nearest MiniLM input "
            f"embeddings (WordNet is not available offline).",
            "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]


def _describe_lm(lm: dict | None, spec_lm: dict) -> str:
    if lm is None:
        return spec_lm.get("model") or f"the embedded {spec_lm.get('local_model') or 'default local model'}"
    local = lm.get("local_model") or spec_lm.get("local_model") or "local model"
    where = (f"the embedded {local} (GGUF) on llama.cpp, CPU" if lm.get("embedded")
             else lm.get("api_base") or "the provider's endpoint")
    return (f"`{lm['model']}` ({where}), adapter {lm.get('adapter')}, max_tokens {lm.get('max_tokens')}, "
            f"generation temperature 1.0, relabeling temperature 0")


def _generation_lines(rows: Sequence[dict]) -> list[str]:
    shares: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row.get("relabeled_share") is not None:
            shares[(row["dataset"], row["method"])].append(row["relabeled_share"])
    if not shares:
        return ["No generation in this grid."]
    lines = ["Share of generated texts the LLM relabeled (final label != the class they were generated for), "
             "mean over seeds:", ""]
    lines += [f"- {dataset_key(d)} / {m}: {100 * statistics.fmean(v):.1f}%" for (d, m), v in sorted(shares.items())]
    return lines
