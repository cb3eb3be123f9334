"""The second round aimed at the student's confusions (a2fb, experiments/feedback.py): which pairs get the
round-2 calls, that no test label is read, and that a run killed between rounds repeats no finished call."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from student_fixtures import CLASS_WORDS, LABELS, make_examples, make_tiny_bert

from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.data.types import Dataset, Example
from promptmix_dspy.experiments.experiment import run_experiment
from promptmix_dspy.experiments.feedback import ROUND2_START, choose_pairs, plan_round2, second_round
from promptmix_dspy.experiments.spec import ExperimentSpec
from promptmix_dspy.llm.adapters import PromptMixAdapter
from promptmix_dspy.llm.runner import Budget
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.modules import PromptMix
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.testing import RuleResponder, ScriptedServer, scripted_lm, stable_generate


def test_the_most_confused_pairs_get_the_round2_calls_in_proportion():
    confusion = {"LOC": {"LOC": 8, "HUM": 2, "NUM": 0}, "HUM": {"LOC": 6, "HUM": 4, "NUM": 0},
                 "NUM": {"LOC": 0, "HUM": 0, "NUM": 10}}
    pairs = choose_pairs(confusion, LABELS)
    assert [(p["true"], p["predicted"], p["rate"]) for p in pairs] == [("HUM", "LOC", 0.6), ("LOC", "HUM", 0.2)]
    cards = [ClassCard(name=lab, description=f"about {lab}", examples=[f"{lab} seed"]) for lab in LABELS]
    config = AugmentConfig(per_class=3, texts_per_call=3)
    calls = plan_round2(pairs, PromptMix(cards), LABELS, config, n_calls=8)
    assert [(c.majority, c.minority is None or c.minority) for c in calls].count(("HUM", "LOC")) + \
        sum(c.majority == "HUM" and c.minority is None for c in calls) == 6  # 8 * 6 / (6 + 2)
    assert sum(c.majority == "LOC" for c in calls) == 2 and len(calls) == 8
    assert all(c.group[:2] == (c.majority, "LOC" if c.majority == "HUM" else "HUM") for c in calls)
    assert all(c.sample_index >= ROUND2_START for c in calls)


def test_round2_targets_the_pair_the_student_confuses(tmp_path):
    """A scripted LM and a scripted student that puts every HUM text in LOC: all of round 2 is HUM mixed
    with LOC, the probe pool and round 2 are relabeled, and a third of the probe is held out."""
    train = [Example(f"{lab} seed {i}", lab) for lab in LABELS for i in range(2)]
    split = few_shot_split(Dataset("toy", LABELS, train), 2, 0)
    cards = [ClassCard(name=lab, description=f"about {lab}", examples=split.seeds_by_label()[lab])
             for lab in LABELS]
    lm = scripted_lm(RuleResponder(generate=stable_generate, relabel=_first_named))
    handle = LMHandle(lm, PromptMixAdapter(), "openai/scripted", None, "promptmix", embedded=False)
    trained = []

    def train_fn(rows, folder):
        trained.append(len(rows))
        return folder

    def predict(folder, texts):
        return ["LOC" if "a HUM text" in t else _first_named(t, LABELS) for t in texts]

    config = AugmentConfig(per_class=3, texts_per_call=3, num_threads=1, top_k=3)
    round1 = [{"text": f"round one {lab} text", "label": lab, "generated_for": lab} for lab in LABELS]
    with handle.context():
        result = second_round(PromptMix(cards), split, round1, config, handle, tmp_path, Budget(), train_fn, predict)
    assert [(p["true"], p["predicted"]) for p in result.pairs] == [("HUM", "LOC")]
    assert trained == [len(split.seeds) + len(round1)]
    journal = [json.loads(line) for line in (tmp_path / "generated.jsonl").read_text().splitlines()]
    round2 = [r["call"] for r in journal if r["call_id"].startswith("r2:")]
    assert len(round2) == len(LABELS) and all((c["majority"], c["minority"]) == ("HUM", "LOC") for c in round2)
    probe = [r for r in journal if r["call_id"].startswith("probe:")]
    assert len(probe) == len(LABELS)
    assert len(result.held_out) == 3 and not {r["text"] for r in result.held_out} & {r["text"] for r in result.rows}
    assert {r["round"] for r in result.rows} == {1, 2}


def test_a_larger_probe_pool_measures_more_without_changing_round_two(tmp_path):
    """--probe-per-class sizes the probe pool (and so its held-out third); round 2 keeps round 1's budget."""
    train = [Example(f"{lab} seed {i}", lab) for lab in LABELS for i in range(2)]
    split = few_shot_split(Dataset("toy", LABELS, train), 2, 0)
    cards = [ClassCard(name=lab, description=f"about {lab}", examples=split.seeds_by_label()[lab])
             for lab in LABELS]
    handle = LMHandle(scripted_lm(RuleResponder(generate=stable_generate, relabel=_first_named)), PromptMixAdapter(),
                      "openai/scripted", None, "promptmix", embedded=False)
    config = AugmentConfig(per_class=3, texts_per_call=3, num_threads=1, top_k=3, probe_per_class=9)
    round1 = [{"text": f"round one {lab} text", "label": lab, "generated_for": lab} for lab in LABELS]
    with handle.context():
        result = second_round(PromptMix(cards), split, round1, config, handle, tmp_path, Budget(),
                              lambda rows, folder: folder,
                              lambda folder, texts: ["LOC" if "a HUM text" in t else _first_named(t, LABELS)
                                                     for t in texts])
    journal = [json.loads(line) for line in (tmp_path / "generated.jsonl").read_text().splitlines()]
    assert sum(r["call_id"].startswith("probe:") for r in journal) == 3 * len(LABELS)  # 9 per class, 3 per call
    assert sum(r["call_id"].startswith("r2:") for r in journal) == len(LABELS)  # as with the default probe
    pool = json.loads((tmp_path / "pairs.json").read_text())["probe_size"]  # 27 written, less what clean-up dropped
    assert 3 * len(LABELS) < pool <= 9 * len(LABELS) and len(result.held_out) == -(-pool // 3)
    with pytest.raises(ValueError, match="probe_per_class must be >= 1"):
        AugmentConfig(probe_per_class=0)
    smaller = AugmentConfig(per_class=3, texts_per_call=3, num_threads=1, top_k=3)  # resumed with the default
    with handle.context(), pytest.raises(ValueError, match="probe of 9 texts per class, not 3"):
        second_round(PromptMix(cards), split, round1, smaller, handle, tmp_path, Budget(),
                     lambda rows, folder: folder, lambda folder, texts: texts)


def test_the_probe_size_is_part_of_an_a2fb_cell_only_when_set():
    base = {"dataset": "trec6", "per_class": 3}
    assert "probe_per_class" not in ExperimentSpec(method="a2fb", **base).fingerprint()  # older cells still match
    assert ExperimentSpec(method="a2fb", probe_per_class=30, **base).fingerprint()["probe_per_class"] == 30
    assert "probe_per_class" not in ExperimentSpec(method="a2", probe_per_class=30, **base).fingerprint()
    a2fb = ExperimentSpec(method="a2fb", probe_per_class=30, **base).augment_config("mix")
    assert a2fb.probe_per_class == 30  # reaches the second round, but not round 1's identity, shared with a2
    assert a2fb.fingerprint() == ExperimentSpec(method="a2", **base).augment_config("mix").fingerprint()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _dataset_dir(root: Path, poison_test: bool) -> Path:
    folder = root / "toy3"
    folder.mkdir(parents=True)
    test = make_examples(5, 1)
    if poison_test:  # wrong labels everywhere: an a2fb that read them would choose other pairs
        rng = random.Random(0)
        test = [Example(ex.text, rng.choice([lab for lab in LABELS if lab != ex.label])) for ex in test]
    for split, rows in (("train", make_examples(12, 0)), ("test", test)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n"
                                                       for e in rows))
    (folder / "labels.json").write_text(json.dumps(LABELS))
    (folder / "descriptions.json").write_text(json.dumps({k: f"questions with words like {', '.join(v[:3])}"
                                                          for k, v in CLASS_WORDS.items()}))
    (folder / "task.txt").write_text("The texts are questions, classified by the type of answer they expect.\n")
    return folder


def _first_named(text: str, candidates: list[str]) -> str:
    """The class named first in the text: 'a HUM text mixing LOC' is HUM."""
    return min((c for c in candidates if c in text), key=text.index, default=candidates[0])


def _relabel(text: str, candidates: list[str]) -> str:
    return next((c for c in LABELS if c.lower() in text.lower() and c in candidates), candidates[0])


def _spec(dataset: Path, tiny_bert: Path, server: ScriptedServer) -> ExperimentSpec:
    return ExperimentSpec(dataset=str(dataset), method="a2fb", per_class=3, texts_per_call=3, top_k=3, threads=1,
                          student={"student": str(tiny_bert), "epochs": 1, "min_steps": 0},
                          lm={"model": "hosted_vllm/scripted", "api_base": server.base_url, "cache": False})


def _requests_by_kind(requests: list[dict]) -> list[str]:
    return ["texts" if '{"texts"' in r["messages"][0]["content"] else "label" for r in requests]


def _cut_before_round2(run: Path) -> tuple[int, int]:
    """Put a finished a2fb cell back where it was when killed between the rounds: the probe pool and the round-1
    student done, no round-2 call journaled, no final student. Returns (round-2 calls, round-2 texts)."""
    folder = run / "feedback"
    generated = [json.loads(line) for line in (folder / "generated.jsonl").read_text().splitlines()]
    round2_texts = {t for r in generated if r["call_id"].startswith("r2:") for t in r["texts"]}
    (folder / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generated
                                                    if not r["call_id"].startswith("r2:")))
    relabeled = [json.loads(line) for line in (folder / "relabeled.jsonl").read_text().splitlines()]
    (folder / "relabeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in relabeled
                                                    if not set(r["texts"]) & round2_texts))
    for name in ("result.json", "steps/train.json", "steps/evaluate.json", "feedback/rows.jsonl"):
        (run / name).unlink()
    return sum(r["call_id"].startswith("r2:") for r in generated), len(round2_texts)


def test_a2fb_reads_no_test_label_and_resumes_between_rounds_without_repeating_a_call(tmp_path, tiny_bert):
    runs = {}
    for poison in (True, False):
        with ScriptedServer(RuleResponder(generate=stable_generate, relabel=_relabel)) as server:
            spec = _spec(_dataset_dir(tmp_path / f"data-{poison}", poison), tiny_bert, server)
            row = run_experiment(spec, tmp_path / f"run-{poison}")
            runs[poison] = (row, len(server.requests))
            if not poison:
                calls, texts = _cut_before_round2(tmp_path / "run-False")
                sent = len(server.requests)
                again = run_experiment(spec, tmp_path / "run-False")
                resumed = _requests_by_kind(server.requests[sent:])
    clean, poisoned = tmp_path / "run-False" / "feedback", tmp_path / "run-True" / "feedback"
    assert json.loads((clean / "pairs.json").read_text()) == json.loads((poisoned / "pairs.json").read_text())
    assert (clean / "rows.jsonl").read_bytes() == (poisoned / "rows.jsonl").read_bytes()
    assert runs[False][1] == runs[True][1] and runs[False][0]["train_rows"] == runs[True][0]["train_rows"]
    row = runs[False][0]
    assert row["second_round"]["rows"] > 0 and (clean / "confusion.png").exists()
    assert resumed.count("texts") == calls and resumed.count("label") == texts  # round 2 only, nothing else
    assert again["train_rows"] == row["train_rows"]


def test_cli_augment_rounds_2_adds_the_second_round_and_names_the_pairs(tmp_path, tiny_bert):
    from typer.testing import CliRunner

    from promptmix_dspy.cli.app import app

    data, out = _dataset_dir(tmp_path / "data", poison_test=False), tmp_path / "run"
    with ScriptedServer(RuleResponder(generate=stable_generate, relabel=_relabel)) as server:
        result = CliRunner().invoke(app, [
            "augment", "--dataset", str(data), "--out", str(out), "--per-class", "3", "--texts-per-call", "3",
            "--top-k", "3", "--threads", "1", "--lm", "hosted_vllm/scripted", "--api-base", server.base_url,
            "--no-cache", "--rounds", "2", "--round1-student", str(tiny_bert)])
    assert result.exit_code == 0, result.output
    round1 = (out / "augmented.jsonl").read_text().splitlines()
    both = [json.loads(line) for line in (out / "augmented_2rounds.jsonl").read_text().splitlines()]
    pairs = json.loads((out / "round2" / "pairs.json").read_text())["pairs"]
    assert len(both) > len(round1) and {r.get("round", 1) for r in both} == {1, 2}
    assert "round 2: the round-1 student disagreed with the LLM most on" in result.output
    assert all(f"{p['true']} -> {p['predicted']}" in result.output for p in pairs)
    assert (out / "round2" / "student_round1" / "README.md").is_file()  # a real student was trained on round 1
    wrong = CliRunner().invoke(app, ["augment", "--dataset", str(data), "--out", str(tmp_path / "other"),
                                     "--probe-per-class", "9"])
    assert wrong.exit_code != 0 and "--probe-per-class" in wrong.output and "--rounds 2" in wrong.output
    assert not (tmp_path / "other").exists()
