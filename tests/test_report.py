"""The report: mean and sample std over seeds, the tables, the cost, and the plots written and non-empty."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from promptmix_dspy.data.types import Example
from promptmix_dspy.experiments.grid import GridSpec
from promptmix_dspy.experiments.plots import label_matrix, plot_accuracy, plot_boundary, plot_label_matrix
from promptmix_dspy.experiments.report import cost_table, format_cost, results_table, write_grid_report
from promptmix_dspy.experiments.summary import mean_std, summarize

LABELS = ["LOC", "HUM", "NUM"]
PNG = b"\x89PNG\r\n\x1a\n"


def _row(dataset: str, method: str, seed: int, accuracy: float, **extra) -> dict:
    return {"dataset": dataset, "method": method, "seed": seed, "accuracy": accuracy, "macro_f1": accuracy / 2,
            "seconds": {"train": 10.0 + seed, "evaluate": 2.0}, "llm": None, **extra}


ROWS = [_row("trec6", "a2", 0, 0.5), _row("trec6", "a2", 1, 0.7), _row("trec6", "a2", 2, 0.9),
        _row("trec6", "baseline", 0, 0.3), _row("subj", "a2", 0, 0.6)]


class FakeEncoder:
    """Deterministic unit vectors from a hash of the text: no model needed to draw the projection."""

    def encode(self, texts):
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8)[:16].astype(float) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows])


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))
    assert mean_std([0.4]) == (0.4, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_summarize_groups_by_dataset_and_method():
    stats = summarize(ROWS)
    assert stats[("trec6", "a2")]["n"] == 3 and stats[("trec6", "a2")]["mean"] == pytest.approx(0.7)
    assert stats[("trec6", "a2")]["std"] == pytest.approx(0.2)
    assert summarize(ROWS, "macro_f1")[("trec6", "a2")]["mean"] == pytest.approx(0.35)


def test_results_table_has_a_row_per_method_and_a_column_per_dataset():
    table = results_table(ROWS, ["trec6", "subj"], ["baseline", "a2", "eda"]).splitlines()
    assert table[0] == "| method | trec6 | subj |"
    assert table[2].startswith("| **baseline**") and table[2].endswith("| 30.0 (n=1) | pending |")
    assert table[3].endswith("| 70.0 ± 20.0 | 60.0 (n=1) |")
    assert table[4].endswith("| pending | pending |")


def test_cost_table_and_line_report_calls_tokens_price_and_seconds():
    llm = {"llm_calls": 30, "prompt_tokens": 9000, "completion_tokens": 300, "cost_usd": None}
    rows = [_row("trec6", "a2", s, 0.5, llm={**llm, "llm_calls": 30 + 10 * s, "cache_served_tokens": 1000 * s},
                 llm_call_seconds={"generate": 100.0 + 10 * s}) for s in (0, 1)]
    old = [_row("subj", "a2", 0, 0.5, llm=llm)]  # a cell made before cache-served answers were costed
    table = cost_table(rows + old, ["trec6", "subj"], ["a2", "baseline"]).splitlines()
    assert table[0].split(" | ")[9] == "generate call-s" and len(table) == 4  # no baseline rows, no line
    line = table[2].split(" | ")
    assert line[:8] == ["| trec6", "a2", "2", "35", "9000", "300", "500", "n/a"]  # 500: mean cache-served
    assert line[9] == "105" and line[10] == "–"  # generate: call-seconds summed from the journals; no relabel
    assert line[12] == "10" and line[13].startswith("2")  # train s = mean(10, 11) rounded; evaluate 2
    assert table[3].split(" | ")[6] == "–"  # not recorded, not zero
    priced = dict(llm, cost_usd=0.0123)
    line = format_cost({"llm": priced, "seconds": {"train": 3.0}, "llm_call_seconds": {"relabel": 40.2}})
    assert "$0.0123" in line and "train 3s" in line and "relabel 40 call-s" in line
    assert "no LLM" in format_cost({"llm": None, "seconds": {}})


def _generation(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(LABELS))
    seeds = [{"text": f"seed {lab} {i} {seed}", "label": lab} for lab in LABELS for i in range(2)]
    rows = [{"text": f"gen {lab} {i} {seed}", "generated_for": lab, "label": "LOC" if i == 0 else lab,
             "relabeled": i == 0 and lab != "LOC"} for lab in LABELS for i in range(3)]
    for name, data in (("seeds.jsonl", seeds), ("augmented.jsonl", rows)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in data))
    return folder


def test_label_matrix_counts_generated_for_against_final_label():
    rows = [{"generated_for": "HUM", "label": "LOC"}, {"generated_for": "HUM", "label": "HUM"},
            {"generated_for": "NUM", "label": "NUM"}]
    assert label_matrix(rows, LABELS) == [[0, 0, 0], [1, 1, 0], [0, 0, 1]]


def _is_png(path: Path) -> bool:
    """A PNG with something drawn on it: more than 1% of its pixels not white, in at least three colours (a blank
    figure, or one holding only a frame, fails)."""
    import numpy as np
    from matplotlib.image import imread

    if not (path.exists() and path.read_bytes()[:8] == PNG):
        return False
    pixels = imread(path)[..., :3].reshape(-1, 3)
    drawn = pixels[(pixels < 0.97).any(axis=1)]
    return len(drawn) > 0.01 * len(pixels) and len(np.unique((drawn * 8).astype(int), axis=0)) >= 3


def test_plots_are_written_and_non_empty(tmp_path):
    gens = [_generation(tmp_path / f"seed{s}" / "mix", s) for s in (0, 1)]
    train = [Example(f"train {lab} {i}", lab) for lab in LABELS for i in range(50)]
    assert _is_png(plot_accuracy(ROWS, ["trec6", "subj"], ["baseline", "a2"], tmp_path / "acc.png"))
    assert _is_png(plot_boundary("toy", gens[0], None, tmp_path / "b.png", encoder=FakeEncoder(), train=train))
    assert _is_png(plot_label_matrix("toy", gens, tmp_path / "m.png"))


def test_write_grid_report(tmp_path, monkeypatch):
    out = tmp_path / "grid"
    for seed in (0, 1):
        _generation(out / "generations" / "trec6" / f"seed{seed}" / "mix", seed)
    monkeypatch.setattr("promptmix_dspy.method.candidates.SentenceEncoder", FakeEncoder)
    monkeypatch.setattr("promptmix_dspy.experiments.plots._train", lambda dataset, data_dir: [
        Example(f"train {lab} {i}", lab) for lab in LABELS for i in range(20)])
    grid = GridSpec(["trec6", "subj"], ["baseline", "a2"], [0, 1, 2])
    rows = [dict(r, versions={"dspy": "3.4.1"}, relabeled_share=0.25 if r["method"] == "a2" else None)
            for r in ROWS]
    paths = write_grid_report(grid, out, rows, command="promptmix bench --out grid")
    names = sorted(p.name for p in paths["files"] if p.suffix == ".png")
    assert names == ["accuracy.png", "boundary_trec6.png", "labels_trec6.png"]
    assert all(_is_png(out / n) for n in names)
    md = (out / "results.md").read_text()
    # three seeds 0.5, 0.7, 0.9: the mean and its t interval, 0.7 +- 4.303 * 0.2 / sqrt(3)
    assert "| **a2**" in md and "70.0 [20.3, 119.7]" in md and "![labels_trec6](labels_trec6.png)" in md
    assert "trec6 / a2: 25.0%" in md and "`promptmix bench --out grid`" in md and "Cells finished: 5 of 12" in md
    assert "| HUM | – |  | LOC | gen HUM 0 0 |" in md  # an example row: generated for HUM, relabeled LOC


def test_report_dir_holds_the_whole_report(tmp_path):
    grid = GridSpec(["trec6"], ["baseline"], [0])
    rows = [dict(ROWS[3], versions={})]
    paths = write_grid_report(grid, tmp_path / "grid", rows, report_dir=tmp_path / "committed")
    assert sorted(p.name for p in (tmp_path / "committed").iterdir()) == ["accuracy.png", "results.jsonl",
                                                                            "results.md"]
    assert [json.loads(x) for x in (tmp_path / "committed" / "results.jsonl").read_text().splitlines()] == rows
    assert all(p.parent == tmp_path / "committed" for p in paths["files"])


def test_a_hand_written_reading_in_the_report_folder_appears_below_the_claims(tmp_path):
    grid = GridSpec(["trec6"], ["baseline"], [0])
    rows = [dict(ROWS[3], versions={})]
    dest = tmp_path / "committed"
    write_grid_report(grid, tmp_path / "grid", rows, report_dir=dest)
    assert "## Reading" not in (dest / "results.md").read_text()
    (dest / "reading.md").write_text("- a2 beats a1 by 33 points on trec6 seed 0.\n")
    write_grid_report(grid, tmp_path / "grid", rows, report_dir=dest)
    text = (dest / "results.md").read_text()
    assert text.index("## The paper's claims") < text.index("## Reading") < text.index("## Settings")
    assert "- a2 beats a1 by 33 points on trec6 seed 0." in text


def test_pending_cells_say_so_and_partial_ones_say_how_many_seeds():
    table = results_table(ROWS, ["trec6", "subj", "banking77"], ["a2", "baseline"], seeds=3)
    a2 = next(line for line in table.splitlines() if "**a2**" in line)
    baseline = next(line for line in table.splitlines() if "**baseline**" in line)
    assert "70.0 ± 20.0 |" in a2 and "60.0 (1 of 3 seeds; the rest pending)" in a2 and a2.endswith("pending |")
    assert "30.0 (1 of 3 seeds; the rest pending)" in baseline


INPUTS = {"data": "d", "seeds": "s", "generation": "g", "teacher_sample": "t"}


def _claim_row(method: str, seed: int, accuracy: float, **inputs) -> dict:
    return _row("trec6", method, seed, accuracy, inputs={**INPUTS, **inputs})


def test_a_known_three_seed_case_gets_the_t_interval_computed_by_hand():
    from promptmix_dspy.experiments.claims import paired, verdict

    better = [_claim_row("a2", s, a) for s, a in enumerate((0.60, 0.70, 0.80))]
    worse = [_claim_row("a1", s, a) for s, a in enumerate((0.50, 0.55, 0.60))]
    stat = paired(better, worse, ("data", "seeds", "generation"))
    # differences 0.10, 0.15, 0.20: mean 0.15, sample sd 0.05, se 0.05 / sqrt(3); t(0.975, 2 df) = 4.302653
    half = 4.302653 * 0.05 / 3 ** 0.5
    low, high = stat.interval()
    assert stat.n == 3 and stat.mean == pytest.approx(0.15)
    assert (low, high) == (pytest.approx(0.15 - half, abs=1e-6), pytest.approx(0.15 + half, abs=1e-6))
    assert verdict(stat) == ("holds", "+15.0 points, 95% interval [+2.6, +27.4], higher on 3 of 3 seeds")


def test_the_verdict_rule_at_its_boundaries():
    from promptmix_dspy.experiments.claims import paired, verdict

    def stat(a, b):
        return paired([_claim_row("x", s, v) for s, v in enumerate(a)], [_claim_row("y", s, v) for s, v in
                                                                          enumerate(b)], ("data",))
    assert verdict(stat((0.3, 0.35, 0.4), (0.6, 0.7, 0.8)))[0] == "does not hold"
    assert verdict(stat((0.5, 0.7, 0.6), (0.6, 0.5, 0.62)))[0] == "within the noise"
    # two seeds that agree perfectly are still too few for a verdict
    assert verdict(stat((0.8, 0.9), (0.3, 0.4))) == ("too few seeds", "2 paired seed(s), +50.0 points")
    # one seed more of the same: the interval is a point above 0, and the claim holds
    assert verdict(stat((0.8, 0.9, 0.7), (0.3, 0.4, 0.2)))[0] == "holds"


def test_a_claim_refuses_to_pair_cells_made_on_different_generated_texts():
    from promptmix_dspy.experiments.claims import paired, verdict

    better = [_claim_row("a2fb", s, 0.8) for s in range(3)]
    worse = [_claim_row("a2x", 0, 0.5), _claim_row("a2x", 1, 0.5, generation="another sample"),
             {k: v for k, v in _claim_row("a2x", 2, 0.5).items() if k != "inputs"}]
    stat = paired(better, worse, ("data", "seeds", "generation"))
    assert stat.seeds == (0,)
    assert stat.unpaired == ("seed 1: generation differ", "seed 2: no input identity recorded (data, seeds, "
                                                          "generation)")
    word, numbers = verdict(stat)
    assert word == "too few seeds" and "unpaired: seed 1: generation differ" in numbers


def test_the_claims_section_and_the_teacher_gap_on_the_teachers_texts():
    from promptmix_dspy.experiments.claims import claims_section

    rows = [_claim_row(m, s, acc, ) for m, accs in (("a2", (0.6, 0.7, 0.8)), ("a1", (0.3, 0.35, 0.4)),
                                                     ("llm", (0.9, 0.9, 0.9))) for s, acc in enumerate(accs)]
    for row in rows:
        if row["method"] == "a2":  # the student on the teacher's own texts: 0.1 better than on the whole set
            row["teacher_sample"] = {"accuracy": row["accuracy"] + 0.1}
    lines = claims_section(rows, ["trec6"], ["a1", "a2", "llm"])
    assert any("relabeling matters" in line and "**holds**: +35.0 points" in line for line in lines)
    gap = next(line for line in lines if "its teacher" in line)
    assert "10.0 points below the teacher (3 seed(s)" in gap
    assert not any("baseline" in line for line in lines)  # a claim whose methods are not in the grid is left out


def test_a_grid_of_two_cells_with_a_scripted_lm_writes_the_report_with_pending_cells(tmp_path, data_dir):
    """Two finished cells of a bigger grid: every column of the report is there, the rest says pending."""
    from student_fixtures import make_tiny_bert

    from promptmix_dspy.experiments.grid import run_grid
    from promptmix_dspy.testing import RuleResponder, ScriptedServer

    bert = make_tiny_bert(tmp_path / "bert")
    with ScriptedServer(RuleResponder()) as server:
        base = {"per_class": 1, "texts_per_call": 1, "teacher_test_limit": 3, "top_k": 6, "threads": 2,
                "student": {"student": str(bert), "epochs": 1, "min_steps": 0}, "data_dir": str(data_dir),
                "lm": {"model": "hosted_vllm/scripted", "api_base": server.base_url, "cache": False}}
        small = GridSpec(["trec6"], ["a2", "llm"], [0], base)
        rows = run_grid(small, tmp_path / "g")
    big = GridSpec(["trec6", "subj"], ["baseline", "a2", "llm"], [0, 1], base)
    paths = write_grid_report(big, tmp_path / "g", rows, "promptmix bench ...")
    text = (tmp_path / "g" / "results.md").read_text()
    assert "| **baseline**: student on the seeds only | pending | pending |" in text
    assert "(1 of 2 seeds; the rest pending)" in text and "Cells finished: 2 of 12" in text
    cost = text.split("## Cost per cell", 1)[1]
    for column in ("LLM calls", "prompt tokens", "completion tokens", "tokens served from cache", "price (USD)",
                   "relabel call-s",
                   "teacher call-s", "train s", "evaluate s"):
        assert column in cost
    assert "relabeled" in text and "## The paper's claims" in text
    assert {p.name for p in paths["files"]} >= {"results.md", "accuracy.png", "boundary_trec6.png",
                                                 "labels_trec6.png"}
    # a finished cell of a seed whose generation is not here (adopted): the plots drawn from more seeds stay
    (tmp_path / "g" / "labels_trec6.png").write_bytes(PNG + b"drawn from every seed")
    adopted = [*rows, {**next(r for r in rows if r["method"] == "a2"), "seed": 1}]
    partial = write_grid_report(big, tmp_path / "g", adopted, "promptmix bench ...")
    assert (tmp_path / "g" / "labels_trec6.png").read_bytes() == PNG + b"drawn from every seed"
    assert tmp_path / "g" / "labels_trec6.png" in partial["files"]
    adopted_mark = tmp_path / "g" / "cells" / "trec6" / "a2" / "seed0" / "adopted.json"
    adopted_mark.write_text("{}")  # the cell was adopted: the generation here was made after it, not its texts
    write_grid_report(big, tmp_path / "g", rows, "promptmix bench ...")
    assert (tmp_path / "g" / "labels_trec6.png").read_bytes() == PNG + b"drawn from every seed"
    adopted_mark.unlink()
    write_grid_report(big, tmp_path / "g", rows, "promptmix bench ...")  # every generation here: drawn again
    assert (tmp_path / "g" / "labels_trec6.png").read_bytes() != PNG + b"drawn from every seed"
    # the run folder's generations lost (a fresh clone adopting these cells): the plots drawn from them stay
    import shutil

    shutil.rmtree(tmp_path / "g" / "generations")
    again = write_grid_report(big, tmp_path / "g", rows, "promptmix bench ...")
    assert {p.name for p in again["files"]} >= {"boundary_trec6.png", "labels_trec6.png"}
    text_again = (tmp_path / "g" / "results.md").read_text()
    assert "![boundary_trec6](boundary_trec6.png)" in text_again
    examples = text.split("Generated texts, trec6 seed0", 1)[1].split("\n\n")[1]  # the table under the title
    assert examples.startswith("| generated for") and examples in text_again  # the examples table stays too
    assert "boundary_subj.png" not in {p.name for p in again["files"]}  # no subj cell: no plot invented


def test_second_round_cells_get_their_pairs_and_confusion_plot_in_the_report(tmp_path):
    out, dest = tmp_path / "grid", tmp_path / "committed"
    feedback = out / "cells" / "trec6" / "a2fb" / "seed1" / "feedback"
    feedback.mkdir(parents=True)
    (feedback / "confusion.png").write_bytes(PNG + b"plot")
    second = {"rows": 36, "held_out": 7,
              "pairs": [{"true": "LOC", "predicted": "HUM", "rate": 0.5, "count": 2, "of": 4},
                        {"true": "NUM", "predicted": "LOC", "rate": 0.25, "count": 1, "of": 4},
                        {"true": "ABBR", "predicted": "LOC", "rate": None, "count": 1, "of": 4}],
              "pair_rates_after": [{"true": "LOC", "predicted": "HUM", "rate": 0.0, "count": 0, "of": 4},
                                   {"true": "ABBR", "predicted": "LOC", "rate": None, "count": 1, "of": 4}]}
    rows = [dict(_row("trec6", "a2fb", 1, 0.6, second_round=second), versions={}),
            dict(_row("trec6", "a2fb", 0, 0.5, second_round=dict(second, pairs=[])), versions={}),
            dict(ROWS[3], versions={})]
    paths = write_grid_report(GridSpec(["trec6"], ["baseline", "a2fb"], [0, 1]), out, rows, report_dir=dest)
    md = (dest / "results.md").read_text()
    assert "## The second round (a2fb): where it was aimed" in md
    # ABBR: no held-out text of that class, before or after: said, not a crash
    assert "| trec6 | a2fb | 1 | 36 | 7 | LOC -> HUM 0.50 -> 0.00; NUM -> LOC 0.25 -> ?; ABBR -> LOC n/a -> n/a | " \
           "[confusion_trec6_seed1.png](confusion_trec6_seed1.png) |" in md
    assert "| trec6 | a2fb | 0 | 36 | 7 | – | – |" in md  # no pairs, no plot: said, not invented
    assert (dest / "confusion_trec6_seed1.png").read_bytes() == PNG + b"plot"
    assert dest / "confusion_trec6_seed1.png" in paths["files"]
    import shutil

    shutil.rmtree(out)  # the cell's files are gone (adopted cells): the committed plot stays in the report
    kept = write_grid_report(GridSpec(["trec6"], ["baseline", "a2fb"], [0, 1]), out, rows, report_dir=dest)
    assert dest / "confusion_trec6_seed1.png" in kept["files"]
    assert "[confusion_trec6_seed1.png](confusion_trec6_seed1.png) |" in (dest / "results.md").read_text()
    plain = write_grid_report(GridSpec(["trec6"], ["baseline"], [0]), out, [rows[2]], report_dir=tmp_path / "p")
    assert "second round" not in (tmp_path / "p" / "results.md").read_text() and len(plain["files"]) == 3
