"""evals/soft_labels_choice.py: the choice over seeds is the variant with the best mean macro-F1 over datasets."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "evals" / "soft_labels_choice.py"


@pytest.fixture(scope="module")
def choice():
    spec = importlib.util.spec_from_file_location("soft_labels_choice", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(choice, f1s: dict) -> list[dict]:
    """f1s: (dataset, seed) -> one macro-F1 per variant, in VARIANTS' order."""
    return [{"dataset": d, "seed": s, "variant": v, "texts": 10, "accuracy": f, "macro_f1": f}
            for (d, s), values in f1s.items() for v, f in zip(choice.VARIANTS, values)]


def test_summary_means_over_seeds_and_picks_best_mean_over_datasets(choice):
    # variant 0 wins trec6 on both seeds, variant 2 wins subj by more: over the datasets variant 2 is best
    data = rows(choice, {("trec6", 0): [0.70, 0.60, 0.66, 0.50], ("trec6", 1): [0.60, 0.50, 0.58, 0.50],
                         ("subj", 0): [0.50, 0.50, 0.70, 0.50], ("subj", 1): [0.40, 0.40, 0.60, 0.50],
                         ("subj", 9): [0.99, 0.99, 0.00, 0.99]})  # a seed not asked for is left out
    lines, verdict = choice.summarise(data, ["trec6", "subj"], [0, 1])
    names = list(choice.VARIANTS)
    assert f"| trec6 | {names[0]} | 2 | 65.0% | 65.0 |" in lines
    assert f"| subj | {names[2]} | 2 | 65.0% | 65.0 |" in lines
    # means over datasets: v0 (0.65 + 0.45) / 2 = 55.0, v2 (0.62 + 0.65) / 2 = 63.5
    assert verdict.startswith(f"Mean macro-F1 over the datasets: {names[2]} 63.5, {names[0]} 55.0")
    assert verdict.endswith(f"Best: **{names[2]}**.")


def test_a_variant_missing_on_a_dataset_is_not_chosen(choice):
    data = rows(choice, {("trec6", 0): [0.5, 0.5, 0.5, 0.5], ("subj", 0): [0.5, 0.5, 0.5, 0.5]})
    best = list(choice.VARIANTS)[3]
    data = [r for r in data if not (r["dataset"] == "subj" and r["variant"] == best)]
    data.append({"dataset": "trec6", "seed": 1, "variant": best, "texts": 10, "accuracy": 1.0, "macro_f1": 1.0})
    _, verdict = choice.summarise(data, ["trec6", "subj"], [0, 1])
    assert best not in verdict


def test_rerun_measures_only_what_the_json_lacks(choice, tmp_path, monkeypatch):
    done = rows(choice, {("trec6", 0): [0.5, 0.6, 0.7, 0.8]})
    saved = tmp_path / "choice.json"
    saved.write_text(json.dumps(done))
    asked = []

    def measure(dataset, grid, data_dir, seed):
        asked.append((dataset, seed))
        return rows(choice, {(dataset, seed): [0.1, 0.2, 0.3, 0.4]})

    monkeypatch.setattr(choice, "measure", measure)
    out = tmp_path / "choice.md"
    choice.main(["--datasets", "trec6", "--seeds", "0,1", "--json", str(saved), "--out", str(out)])
    assert asked == [("trec6", 1)]
    assert len(json.loads(saved.read_text())) == 8
    assert "| trec6 | 1 |" in out.read_text()


def test_bad_seeds_flag_is_named(choice, capsys):
    with pytest.raises(SystemExit):
        choice.main(["--seeds", "0,x"])
    assert "--seeds" in capsys.readouterr().err
