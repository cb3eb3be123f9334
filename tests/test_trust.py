"""What makes a published number trustworthy: test texts never trained on, cells pinned to their data and
their generation, a2fb's pairs chosen without its held-out third (experiments/claims.py has its own tests in
test_report.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from student_fixtures import LABELS, make_examples, make_tiny_bert

from promptmix_dspy.experiments.experiment import SpecMismatch, run_experiment
from promptmix_dspy.experiments.spec import ExperimentSpec
from promptmix_dspy.method.contamination import TestOverlap
from promptmix_dspy.testing import RuleResponder, ScriptedServer


def test_exact_and_near_test_texts_are_found_and_short_lookalikes_are_not():
    overlap = TestOverlap(["Who invented the telephone ?", "What does the acronym NASA stand for ?",
                           "What is the name of the dog that Roy Rogers owned in the films ?", "What does IBM stand for ?"])
    found = {m.text: m.kind for m in overlap.matches([
        "Who invented the telephone?",                                     # punctuation only: exact
        "What does the acronym 'NASA' stand for?",                         # quotes: exact
        "What is the name of the dog that Roy Rogers owned in his films?",  # one word edited, 13 words: near
        "What does I.V. stand for ?",                                       # 5 words, another question: no
        "Who discovered penicillin ?"])}
    assert found == {"Who invented the telephone?": "exact", "What does the acronym 'NASA' stand for?": "exact",
                     "What is the name of the dog that Roy Rogers owned in his films?": "near"}


def test_a_generated_test_question_is_caught_and_removed_before_relabeling(tmp_path, data_dir):
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.pipeline.augment import augment
    from promptmix_dspy.pipeline.config import AugmentConfig

    test_text = load_dataset("trec6", data_dir=data_dir).test[0].text
    leaked = test_text.replace(" ?", "?")  # the LLM writes a test question, up to punctuation

    def generate(fields: dict, n: int) -> list[str]:
        return [leaked, f"a fresh {fields['majority_class']} question number {n}"]

    with ScriptedServer(RuleResponder(generate=generate)) as server:
        settings = {"model": "hosted_vllm/scripted", "api_base": server.base_url, "cache": False}
        from promptmix_dspy.llm.settings import LMSettings

        config = AugmentConfig(per_class=2, texts_per_call=2, top_k=6, max_rounds=1, reask=0)
        result = augment("trec6", tmp_path, config, LMSettings(**settings), data_dir=data_dir)
        relabeled = [r for r in server.requests if "of one candidate only." in r["messages"][0]["content"]]
    assert leaked not in {r["text"] for r in result.rows} and result.rows
    assert not any(leaked in r["messages"][-1]["content"] for r in relabeled)  # no relabel call was spent on it
    record = result.summary["contamination"]
    assert (record["exact"], record["removed"], record["test_texts"]) == (1, 1, 500)
    found = [json.loads(line) for line in (tmp_path / "contamination.jsonl").read_text().splitlines()]
    assert found == [{"text": leaked, "test_text": test_text, "kind": "exact", "ratio": 1.0}]
    assert result.summary["dropped"]["test_exact"] == 1


def _copy_data(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


def _toy(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split, n, seed in (("train", 12, 0), ("test", 5, 1)):
        rows = [{"text": e.text, "label": e.label} for e in make_examples(n, seed)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "labels.json").write_text(json.dumps(LABELS))
    (folder / "descriptions.json").write_text(json.dumps({k: f"texts about {k}" for k in LABELS}))
    return folder


def test_a_finished_cell_refuses_another_data_folder(tmp_path, tiny_bert):
    data = _toy(tmp_path / "data" / "toy3")
    spec = ExperimentSpec(dataset=str(data), method="baseline", student={"student": str(tiny_bert), "epochs": 1, "min_steps": 0})
    row = run_experiment(spec, tmp_path / "cell")
    assert row["inputs"]["data"] and row["inputs"]["seeds"]
    lines = (data / "test.jsonl").read_text().splitlines()
    edited = json.loads(lines[0])
    edited["text"] += " again"
    (data / "test.jsonl").write_text("\n".join([json.dumps(edited), *lines[1:]]) + "\n")
    with pytest.raises(SpecMismatch, match=r"the data differs \(test\)"):
        run_experiment(spec, tmp_path / "cell")


def test_a_cell_whose_generation_was_made_again_is_retrained_not_reused(tmp_path, tiny_bert):
    data = _toy(tmp_path / "data" / "toy3")
    with ScriptedServer(RuleResponder()) as server:
        spec = ExperimentSpec(dataset=str(data), method="a2", per_class=2, top_k=3, threads=1,
                              student={"student": str(tiny_bert), "epochs": 1, "min_steps": 0},
                              lm={"model": "hosted_vllm/scripted", "api_base": server.base_url, "cache": False})
        first = run_experiment(spec, tmp_path / "cell", generation_dir=tmp_path / "gen")
        # the generation is made again (lost and redone: another sample of the same calls)
        selected = [json.loads(line) for line in (tmp_path / "gen" / "selected.jsonl").read_text().splitlines()]
        selected[0]["text"] = "where is the capital river city"
        (tmp_path / "gen" / "selected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in selected))
        again = run_experiment(spec, tmp_path / "cell", generation_dir=tmp_path / "gen")
    assert again["inputs"]["generation"] != first["inputs"]["generation"]
    assert again["finished"] != first["finished"]  # trained again, on the generation at hand
    assert [p.name for p in (tmp_path / "cell").glob("result.stale-*.json")]  # the old row is kept aside


def test_a2fb_chooses_its_pairs_without_the_held_out_third(tmp_path):
    from promptmix_dspy.experiments.feedback import _pairs

    probe = [{"text": f"t{i}", "label": "LOC"} for i in range(6)]
    # every third text (0, 3) is held out; the student is wrong only there
    predict = lambda folder, texts: ["HUM" if t in ("t0", "t3") else "LOC" for t in texts]  # noqa: E731
    pairs, held_out = _pairs(tmp_path, tmp_path, probe, probe[::3], LABELS, predict)
    assert pairs == []  # the confusion it measures is not the one it was chosen on
    assert held_out["LOC"]["HUM"] == 2
    predict = lambda folder, texts: ["HUM" if t == "t1" else "LOC" for t in texts]  # noqa: E731
    pairs, _ = _pairs(tmp_path / "b", tmp_path, probe, probe[::3], LABELS, predict)
    assert [(p["true"], p["predicted"], p["count"], p["of"]) for p in pairs] == [("LOC", "HUM", 1, 4)]
