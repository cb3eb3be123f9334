"""The augmentation pipeline on a scripted LM: provenance, determinism, resume, failures, descriptions."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import dspy
import pytest

from promptmix_dspy.data.types import Dataset, Example
from promptmix_dspy.llm.adapters import PromptMixAdapter
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.pipeline.augment import RunMismatch, run_augment
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.testing import ConcurrencyProbe, RuleResponder, distinct_words, numbered, parse_fields, scripted_lm

LABELS = ["weather", "sports", "music"]


def _dataset(descriptions: bool = True) -> Dataset:
    train = [Example(f"{lab} example number {i}", lab) for lab in LABELS for i in range(5)]
    descs = {lab: f"texts about {lab}" for lab in LABELS} if descriptions else {}
    return Dataset("toy", LABELS, train, [], descs)


def _prompt_texts(fields: dict, n: int) -> list[str]:
    """Texts depend on the prompt and on how often that exact prompt was asked (like fresh samples)."""
    maj, mino = fields["majority_class"], fields["minority_class"]
    return [f"{maj} {mino} {fields['majority_share']}: {distinct_words(f'{n}-{i}')}"
            for i in range(int(fields["num_texts"]))]


def _relabel_by_keyword(text: str, candidates: list[str]) -> str:
    # The first class name in the text wins, so mixed texts (majority first) keep their majority label,
    # except "music" which always wins: some rows are relabeled.
    return "music" if "music" in text and "music" in candidates else next(c for c in candidates if c in text)


def _handle(responder: RuleResponder | None = None) -> LMHandle:
    lm = scripted_lm(responder or RuleResponder(generate=_prompt_texts, relabel=_relabel_by_keyword))
    return LMHandle(lm, PromptMixAdapter(), "openai/scripted", None, "promptmix", embedded=False)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(tmp_path: Path, name: str = "run", handle: LMHandle | None = None, ds: Dataset | None = None, **cfg):
    config = AugmentConfig(per_class=4, num_threads=1, **cfg)
    return run_augment(ds or _dataset(), tmp_path / name, config, handle or _handle())


def test_rows_carry_provenance_and_config_is_written(tmp_path):
    result = _run(tmp_path)
    rows = _read(tmp_path / "run" / "augmented.jsonl")
    assert rows == result.rows and len(rows) == 12
    plan = {c["call_id"]: c for c in json.loads((tmp_path / "run" / "plan.json").read_text())}
    for row in rows:
        call = plan[row["call_id"]]
        assert row["label"] in LABELS and row["lm"] == "openai/scripted"
        assert row["generated_for"] == row["majority"] == call["majority"]
        assert row["minority"] == call["minority"] and row["minority"] in call["group"][1:]
        assert row["majority_share"] == call["majority_share"] and 0.5 <= row["majority_share"] <= 1.0
        assert row["relabeled"] == (row["label"] != row["generated_for"])
    assert any(r["relabeled"] for r in rows) and not all(r["relabeled"] for r in rows)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["augment"]["seed"] == 0 and config["augment"]["per_class"] == 4
    assert config["labels"] == LABELS and "dspy" in config["versions"] and config["lm"]["model"] == "openai/scripted"
    assert [json.loads(x)["label"] for x in (tmp_path / "run" / "seeds.jsonl").read_text().splitlines()] == \
        [lab for lab in LABELS for _ in range(2)]
    share = sum(r["relabeled"] for r in rows) / len(rows)
    assert result.summary["relabeled_share"] == round(share, 4)
    assert result.to_hf_dataset().num_rows == 12


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    _run(tmp_path, "a")
    _run(tmp_path, "b")
    _run(tmp_path, "c", seed=1)
    a, b, c = ((tmp_path / n / "augmented.jsonl").read_bytes() for n in "abc")
    assert a == b and a != c


def test_rerun_resumes_without_new_calls_and_other_settings_are_refused(tmp_path):
    handle = _handle()
    first = _run(tmp_path, handle=handle)
    calls = len(handle.lm.requests)
    second = _run(tmp_path, handle=handle)
    assert len(handle.lm.requests) == calls and second.rows == first.rows
    with pytest.raises(RunMismatch, match="per_class"):
        run_augment(_dataset(), tmp_path / "run", AugmentConfig(per_class=5), handle)


def test_duplicates_trigger_another_round_until_the_quota_is_met(tmp_path):
    repeats = RuleResponder(generate=lambda f, n: [f"{f['majority_class']} the same text"] * 3,
                            relabel=_relabel_by_keyword)
    result = _run(tmp_path, handle=_handle(repeats), max_rounds=2)
    assert result.summary["kept_per_class"] == {lab: 1 for lab in LABELS}
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert {c["call_id"] for c in plan} >= {"weather#2"}  # a second round was planned for the shortfall
    assert result.summary["dropped"]["duplicate"] > 0


def test_relabel_failures_are_counted_and_skipped(tmp_path):
    def relabel(text: str, candidates: list[str]) -> str:
        return "no_such_class" if "weather" in text.split()[0] else _relabel_by_keyword(text, candidates)

    responder = RuleResponder(generate=_prompt_texts, relabel=relabel)
    result = _run(tmp_path, handle=_handle(responder), attempts=2)
    assert "weather" not in {r["generated_for"] for r in result.rows}
    assert result.summary["dropped"]["relabel_failed"] == 4
    assert result.summary["llm"]["failed_units"] == 4
    assert len(result.rows) == 8


def test_no_relabel_keeps_generated_labels_and_makes_no_relabel_call(tmp_path):
    handle = _handle()
    result = _run(tmp_path, handle=handle, relabel=False)
    assert all(r["label"] == r["generated_for"] and not r["relabeled"] for r in result.rows)
    assert not any("candidate_classes" in r["messages"][-1]["content"] for r in handle.lm.requests)


def test_missing_descriptions_are_written_by_the_lm(tmp_path):
    handle = _handle()
    _run(tmp_path, handle=handle, ds=_dataset(descriptions=False))
    assert json.loads((tmp_path / "run" / "descriptions.json").read_text()) == {
        lab: f"texts about {lab}" for lab in LABELS}
    generation = next(r for r in handle.lm.requests if "num_texts" in r["messages"][-1]["content"])
    assert "texts about weather" in generation["messages"][0]["content"]  # the cards, in the system message


def test_no_mix_ablation_asks_for_pure_texts(tmp_path):
    handle = _handle()
    result = _run(tmp_path, handle=handle, fixed_share=1.0)
    assert all(r["minority"] is None and r["majority_share"] == 1.0 for r in result.rows)
    generation = next(r for r in handle.lm.requests if "num_texts" in r["messages"][-1]["content"])
    assert "100% weather" in generation["messages"][-1]["content"]


@pytest.mark.parametrize("bad, match", [({"per_class": 0}, "per_class"), ({"fixed_share": 0.2}, "fixed_share"),
                                        ({"describe": "sometimes"}, "describe"), ({"max_cost": -1}, "max_cost")])
def test_config_validation_names_the_bad_value(bad, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**bad)


def test_requests_in_flight_never_exceed_the_endpoints_slots(tmp_path):
    probe = ConcurrencyProbe(RuleResponder(generate=_prompt_texts, relabel=_relabel_by_keyword))
    handle = _handle(probe)
    handle.slots = 1  # an embedded server with one slot: --threads 4 must not queue requests behind it
    run_augment(_dataset(), tmp_path / "run", AugmentConfig(per_class=3, num_threads=4), handle)
    assert probe.most == 1 and probe.calls > 0
    assert handle.in_flight(4) == 1 and _handle().in_flight(4) == 4


def test_an_embedded_run_resumes_on_the_new_servers_port_and_other_lms_are_refused(tmp_path):
    """The embedded server gets a random port each start: re-running the same command must resume (no call
    repeated), while another model or another remote endpoint is still refused."""
    responder = RuleResponder(generate=_prompt_texts, relabel=_relabel_by_keyword)

    def handle(api_base: str, model: str = "hosted_vllm/smollm2", embedded: bool = True) -> LMHandle:
        return LMHandle(scripted_lm(responder), dspy.JSONAdapter(), model, api_base, "llama-cpp", embedded)

    first = _run(tmp_path, handle=handle("http://127.0.0.1:1111/v1"))
    calls = responder.calls
    again = _run(tmp_path, handle=handle("http://127.0.0.1:2222/v1"))
    assert again.rows == first.rows and responder.calls == calls
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["lm"]["api_base"] == "http://127.0.0.1:2222/v1"
    with pytest.raises(RunMismatch, match="lm"):
        _run(tmp_path, handle=handle("http://127.0.0.1:3333/v1", model="hosted_vllm/other"))
    _run(tmp_path, "remote", handle=handle("http://host-a/v1", embedded=False))
    with pytest.raises(RunMismatch, match="host-b"):
        _run(tmp_path, "remote", handle=handle("http://host-b/v1", embedded=False))


def test_a_written_description_its_seeds_do_not_fit_is_written_again(tmp_path):
    """The LM first describes 'weather' as sports; with those cards alone the relabeler puts the sports seeds in
    weather, so weather (which took them) and sports (which lost them) are described again; what fits is kept."""
    asked: Counter = Counter()

    def describe(fields: dict) -> str:
        asked[fields["class_name"]] += 1
        wrong = fields["class_name"] == "weather" and asked["weather"] == 1
        return "texts about sports" if wrong else f"texts about {fields['class_name']}"

    def by_description(messages: list[dict], params: dict) -> str:
        fields = parse_fields(messages[0]["content"])
        if "candidate_classes" in fields and "Examples" not in messages[0]["content"] and len(messages) == 2:
            # the fit check: the descriptions alone, several seeds a call
            cards = re.findall(r"^- (\w+): texts about (\w+)", fields["candidate_classes"], re.M)
            texts = numbered(parse_fields(messages[-1]["content"])["texts"])
            answer = {str(i): next((c for c, topic in cards if topic in t), cards[0][0]) for i, t in
                      enumerate(texts, 1)}
            return json.dumps({"classes_for_texts": answer})
        return RuleResponder(generate=_prompt_texts, relabel=_relabel_by_keyword, describe=describe)(messages,
                                                                                                   params)

    _run(tmp_path, handle=_handle(by_description), ds=_dataset(descriptions=False))
    assert json.loads((tmp_path / "run" / "descriptions.json").read_text()) == {
        lab: f"texts about {lab}" for lab in LABELS}
    rows = {r["label"]: r for r in _read(tmp_path / "run" / "descriptions.jsonl")}
    assert [(v["seeds_right"], v["stolen"]) for v in rows["weather"]["versions"]] == [(2, 2), (2, 0)]
    assert asked["weather"] == asked["sports"] == 2 and asked["music"] == 1  # music fit: not described again


def test_a_dataset_without_a_task_gets_one_written_by_the_lm_and_a_given_one_is_used_as_is(tmp_path):
    handle = _handle()
    _run(tmp_path, handle=handle)
    task = json.loads((tmp_path / "run" / "task.json").read_text())
    assert task == {"task": "The texts are short messages, classified by topic.", "source": "written by the LM"}
    generation = next(r for r in handle.lm.requests if "num_texts" in r["messages"][-1]["content"])
    assert generation["messages"][0]["content"].startswith(task["task"])
    given = _dataset()
    given.task = "The texts are forecasts, scores and songs."
    handle = _handle()
    _run(tmp_path, "given", handle=handle, ds=given)
    assert json.loads((tmp_path / "given" / "task.json").read_text())["source"] == "given"
    assert all(r["messages"][0]["content"].startswith(given.task) for r in handle.lm.requests)
