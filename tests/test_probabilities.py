"""Class probabilities from one relabel call's logprobs, their calibration, and students that train on them.

The scripted OpenAI-compatible server returns logprobs in llama.cpp's shape (``Fault.top_logprobs``), so the
values below are exact; the real llama.cpp check is in tests/test_llm_integration.py.
"""

from __future__ import annotations

import json
import math

import pytest
from student_fixtures import LABELS, make_examples, make_tiny_bert

from promptmix_dspy.data.types import Example
from promptmix_dspy.llm.logprobs import answer_probabilities
from promptmix_dspy.llm.settings import LMSettings, build_handle
from promptmix_dspy.method.calibration import apply_prior, batch_prior, class_shares
from promptmix_dspy.method.modules import Relabeler
from promptmix_dspy.method.signatures import ClassCard, answer_codes
from promptmix_dspy.testing import Fault, RuleResponder, ScriptedServer

CARDS = [ClassCard(name="LOC", description="a place", examples=["Where is Paris ?"]),
         ClassCard(name="HUM", description="a person", examples=["Who wrote Hamlet ?"]),
         ClassCard(name="NUM", description="a number", examples=["How many legs has a spider ?"])]
BANK = [ClassCard(name=n, description=n.replace("_", " "), examples=[f"about {n}"])
        for n in ("card_arrival", "card_linking", "top_up_failed")]


def _handle(server: ScriptedServer, **settings):
    lm = LMSettings(model="hosted_vllm/scripted", api_base=server.base_url, cache=False, **settings)
    return build_handle(lm, lm.model, server.base_url, embedded=False)


def _scripted(top: dict[str, float], answer: str):
    """Answers ``answer`` to a one-label call, with ``top`` as the first token's alternatives."""
    rule = RuleResponder()

    def respond(messages: list[dict], params: dict):
        if "of one candidate only." in messages[0]["content"]:
            return Fault(content=answer, top_logprobs=top)
        return rule(messages, params)
    return respond


def test_probabilities_are_renormalised_over_the_candidates_and_sum_to_one():
    top = {"LOC": -0.5, "HUM": -1.2, "The": -2.0, " LOC": -3.0}
    with ScriptedServer(_scripted(top, "LOC")) as server:
        handle = _handle(server)
        with handle.context():
            pred = Relabeler(CARDS, top_k=3)(text="Where is the Eiffel Tower ?")
        sent = server.requests[-1]
    probs = pred.probs[0]
    # "The" stands for no class and is left out; " LOC" (a leading space) is the class LOC too
    loc, hum = math.exp(-0.5) + math.exp(-3.0), math.exp(-1.2)
    assert probs == pytest.approx({"LOC": loc / (loc + hum), "HUM": hum / (loc + hum), "NUM": 0.0})
    assert sum(probs.values()) == pytest.approx(1.0) and pred.label == "LOC"
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20


def test_two_labels_sharing_a_first_token_are_told_apart_by_codes():
    names = [c.name for c in BANK]
    assert answer_codes(names) == {"card_arrival": "A", "card_linking": "B", "top_up_failed": "C"}
    assert answer_codes(["LOC", "HUM", "NUM"]) is None  # distinct initials: answered by name
    top = {"B": -0.2, "A": -1.9, "card": -0.4, "As": -3.0}  # "card" would stand for two classes: not counted
    with ScriptedServer(_scripted(top, "B")) as server:
        with _handle(server).context():
            pred = Relabeler(BANK, top_k=3)(text="I cannot link my card")
        prompt = server.requests[-1]["messages"]
    b, a = math.exp(-0.2), math.exp(-1.9)
    assert pred.label == "card_linking"
    assert pred.probs[0] == pytest.approx({"card_arrival": a / (a + b), "card_linking": b / (a + b),
                                           "top_up_failed": 0.0})
    assert "- A. card_arrival: card arrival\n- B. card_linking: card linking" in prompt[0]["content"]
    assert all(m["content"] in ("A", "B", "C") for m in prompt if m["role"] == "assistant")  # demos answer codes


def test_no_alternative_standing_for_a_class_gives_no_probabilities():
    assert answer_probabilities({"content": [{"token": "The", "logprob": -0.1, "top_logprobs": [
        {"token": "The", "logprob": -0.1}]}]}, "The", ["LOC", "HUM"]) is None
    assert answer_probabilities(None, "LOC", ["LOC", "HUM"]) is None


def test_batch_calibration_moves_a_biased_set_to_balance_by_hand():
    rows = [{"x": 0.9, "y": 0.1}, {"x": 0.8, "y": 0.2}, {"x": 0.6, "y": 0.4}, {"x": 0.7, "y": 0.3}]
    prior = batch_prior(rows)
    assert prior == pytest.approx({"x": 0.75, "y": 0.25})
    calibrated = [apply_prior(r, prior) for r in rows]
    # 0.6 / 0.75 = 0.8 against 0.4 / 0.25 = 1.6: the third text goes to y, with 1.6 / 2.4 = 2/3
    assert calibrated[2] == pytest.approx({"x": 1 / 3, "y": 2 / 3})
    assert calibrated[3] == pytest.approx({"x": 0.7 / 0.75 / (0.7 / 0.75 + 1.2), "y": 1.2 / (0.7 / 0.75 + 1.2)})
    raw_labels = [max(r, key=r.get) for r in rows]
    cal_labels = [max(r, key=r.get) for r in calibrated]
    assert class_shares(raw_labels, ["x", "y"]) == {"x": 1.0, "y": 0.0}
    assert class_shares(cal_labels, ["x", "y"]) == {"x": 0.5, "y": 0.5}


def test_a_prior_counts_a_class_only_over_the_texts_that_offer_it():
    prior = batch_prior([{"a": 0.5, "b": 0.5}, {"a": 0.9, "c": 0.1}])
    assert prior == pytest.approx({"a": 0.7, "b": 0.5, "c": 0.1})


def test_a_run_without_logprobs_keeps_hard_labels_and_says_so(tmp_path, data_dir):
    from promptmix_dspy.pipeline.augment import augment
    from promptmix_dspy.pipeline.config import AugmentConfig

    with ScriptedServer(RuleResponder()) as server:
        settings = LMSettings(model="hosted_vllm/scripted", api_base=server.base_url, cache=False, logprobs=False)
        result = augment("trec6", tmp_path, AugmentConfig(per_class=2, top_k=6, max_rounds=1), settings,
                         data_dir=data_dir)
        asked = [r for r in server.requests if "of one candidate only." in r["messages"][0]["content"]]
    assert result.rows and all("probs" not in r and r["label"] == r["label_raw"] for r in result.rows)
    assert asked and not any(r.get("logprobs") for r in asked)
    labelling = json.loads((tmp_path / "summary.json").read_text())["labelling"]
    assert labelling["probabilities"] == "unavailable: the provider returned no logprobs"
    assert labelling["with_probabilities"] == 0 and labelling["texts"] == len(result.rows)


def test_soft_targets_give_the_cross_entropy_against_the_distribution():
    import torch

    from promptmix_dspy.student.train import soft_cross_entropy, target_matrix

    logits = torch.tensor([[2.0, 0.0]])
    # -(0.9 log p0 + 0.1 log p1), p = softmax(2, 0): log p0 = -log(1 + e^-2), log p1 = -2 - log(1 + e^-2)
    expected = 0.9 * math.log(1 + math.exp(-2)) + 0.1 * (2 + math.log(1 + math.exp(-2)))
    assert soft_cross_entropy(logits, torch.tensor([[0.9, 0.1]])).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.3269, abs=1e-4)
    hard = torch.nn.functional.cross_entropy(logits, torch.tensor([0])).item()
    assert soft_cross_entropy(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(hard)
    rows = [Example("a", "HUM", (("HUM", 0.9), ("LOC", 0.1))), Example("b", "LOC")]
    assert target_matrix(rows, ["LOC", "HUM"], "soft") == [[0.1, 0.9], [1.0, 0.0]]
    assert target_matrix(rows, ["LOC", "HUM"], "hard") == [[0.0, 1.0], [1.0, 0.0]]


def test_a_student_trains_on_soft_targets_and_leaves_out_unsure_rows(tmp_path):
    from promptmix_dspy.student.train import TrainConfig, train_student

    bert = make_tiny_bert(tmp_path / "bert")
    rows = [Example(e.text, e.label, ((e.label, 0.55), (next(l for l in LABELS if l != e.label), 0.45)))
            for e in make_examples(2, 3)] + make_examples(2, 4)
    config = TrainConfig(student=str(bert), epochs=1, min_steps=0, targets="soft", min_confidence=0.6)
    out = train_student(rows, LABELS, config, tmp_path / "student")
    record = json.loads((out / "train_config.json").read_text())
    assert record["config"]["targets"] == "soft" and record["data"]["left_out_below_min_confidence"] == 6
    assert record["data"]["rows"] == 6  # the seeds without probabilities always stay


def test_train_on_twenty_rows_takes_at_least_the_minimum_steps(tmp_path):
    from promptmix_dspy.student.train import TrainConfig, train_student

    bert = make_tiny_bert(tmp_path / "bert")
    rows = make_examples(7, 5)[:20]
    assert TrainConfig().min_steps == 300  # the default: a tiny set trains for 300 steps, not 5 epochs' 15
    out = train_student(rows, LABELS, TrainConfig(student=str(bert), min_steps=30, batch_size=8), tmp_path / "s")
    record = json.loads((out / "train_config.json").read_text())
    steps = record["stats"]["epochs"] * 3  # 20 rows, batch 8: 3 optimizer steps an epoch
    assert record["stats"]["epochs"] == 10 and steps >= 30
