"""evals/compile_students.py: a2 vs a2c per seed, and the generations behind them, into the compile-gain table;
and generation_stats, the journal reading it (and benchmarks/token_cost.py) rests on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from promptmix_dspy.experiments.summary import generation_stats
from promptmix_dspy.store.files import read_journal

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("compile_students", REPO / "evals" / "compile_students.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jsonl(path: Path, rows: list[dict], torn: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + ('{"half": ' if torn else ""))


def _generation(folder: Path, cached: bool = False) -> None:
    usage = {"prompt_tokens": 0 if cached else 300, "completion_tokens": 0 if cached else 30, "seconds": 2.0}
    _jsonl(folder / "generated.jsonl", [
        {"texts": ["a", "b"], "raw_texts": ["a", "b", "seed 1"], "dropped": [["seed 1", "seed_copy"]],
         "usage": usage},
        {"texts": ["c", "d"], "raw_texts": ["c", "d"], "dropped": [], "usage": usage}], torn=True)
    _jsonl(folder / "relabeled.jsonl", [{"usage": {"prompt_tokens": 100, "completion_tokens": 10, "seconds": 1.0}}
                                        for _ in range(4)])
    _jsonl(folder / "augmented.jsonl", [{"text": t, "generated_for": "LOC", "label": lab}
                                        for t, lab in zip("abcd", ["LOC", "HUM", "LOC", "LOC"])])


def test_generation_stats_reads_the_journals_up_to_a_torn_line(tmp_path):
    _generation(tmp_path / "mix")
    stats = generation_stats(tmp_path / "mix")
    assert stats["final"] == 4 and stats["generate_calls"] == 2 and stats["relabel_calls"] == 4
    assert stats["written"] == 5 and stats["seed_copy_share"] == pytest.approx(0.2)
    assert stats["kept_per_call"] == 2.0
    assert stats["tokens_per_example"] == pytest.approx((2 * 330 + 4 * 110) / 4)
    assert stats["generate_tokens_per_example"] == pytest.approx(2 * 330 / 4)
    assert read_journal(tmp_path / "nothing.jsonl") == []
    with pytest.raises(ValueError, match="no final examples"):
        generation_stats(tmp_path / "missing")


def test_the_students_section_is_written_once_and_replaced_on_a_rerun(tmp_path):
    script = _script()
    report = tmp_path / "report"
    _jsonl(report / "results.jsonl", [
        {"dataset": "trec6", "method": "a2", "seed": 0, "accuracy": 0.5},
        {"dataset": "trec6", "method": "a2c", "seed": 0, "accuracy": 0.6},
        {"dataset": "trec6", "method": "a2", "seed": 1, "accuracy": 0.4},
        {"dataset": "subj", "method": "a2c", "seed": 0, "accuracy": 0.9}])
    _generation(tmp_path / "grid" / "generations" / "trec6" / "seed0" / "mix")
    _generation(tmp_path / "grid" / "generations" / "trec6" / "seed0" / "compiled", cached=True)
    table = tmp_path / "compile_gain_trec6.md"
    table.write_text("## Compile gain\n\n| before | after |\n")
    args = ["--dataset", "trec6", "--table", str(table), "--grid", f"long={report}",
            "--generations", str(tmp_path / "grid")]
    assert script.main(args) == 0
    first = table.read_text()
    assert first.startswith("## Compile gain\n\n| before | after |\n")
    assert "| long | 0 | 50.0 | 60.0 | +10.0 |" in first
    assert "| long | 1 | 40.0 | pending | – |" in first
    assert "| 0 | a2 | 2 | 5 | 20% | 2.00 | 25% | 110 |" in first  # (4 * 110) / 4 relabel tokens per example
    assert "| 1 | a2 | pending |" in first and "come from the response cache" in first
    assert script.main(args) == 0
    assert table.read_text() == first and first.count(script.BEGIN) == 1
    # the run folder's generations gone (a fresh clone adopted the cells): the rows drawn from them stay, and
    # an adopted cell keeps its row even where its generation was made again (a new sample, not its texts)
    import shutil

    shutil.rmtree(tmp_path / "grid" / "generations")
    adopted = tmp_path / "grid" / "cells" / "trec6" / "a2" / "seed0" / "adopted.json"
    adopted.parent.mkdir(parents=True)
    adopted.write_text("{}")
    (tmp_path / "grid" / "generations" / "trec6" / "seed0").mkdir(parents=True)
    _jsonl(tmp_path / "grid" / "generations" / "trec6" / "seed0" / "mix" / "augmented.jsonl",
           [{"text": "z", "generated_for": "LOC", "label": "LOC"}])
    assert script.main(args) == 0
    assert "| 0 | a2 | 2 | 5 | 20% | 2.00 | 25% | 110 |" in table.read_text()
    assert "| 1 | a2 | pending |" in table.read_text()


def test_a_grid_folder_without_results_is_named_in_the_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script().main(["--dataset", "trec6", "--table", str(tmp_path / "t.md"), "--grid", f"x={tmp_path}"])
    assert f"{tmp_path}/results.jsonl not found" in capsys.readouterr().err
