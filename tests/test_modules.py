"""Modules on a scripted LM: what reaches the prompt, relabeling confined to candidates, top-k choice."""

from __future__ import annotations

import json

import dspy
import pytest

from promptmix_dspy.llm.adapters import LlamaCppJSONAdapter, output_schema
from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder
from promptmix_dspy.method.modules import BorderlineGenerator, ClassDescriber, PromptMix, Relabeler, share_phrase
from promptmix_dspy.method.signatures import ClassCard, GenerateBorderlineExamples, relabel_signature_for
from promptmix_dspy.testing import RuleResponder, parse_fields, scripted_lm

CARDS = [
    ClassCard(name="card_arrival", description="asking when a new card will arrive",
              examples=["I am still waiting on my card?", "When will my card get here?"]),
    ClassCard(name="card_delivery_estimate", description="asking how long card delivery usually takes",
              examples=["How long does a card take to be delivered?", "What is the delivery time for cards?"]),
    ClassCard(name="top_up_failed", description="a top-up that did not go through",
              examples=["My top up failed", "Why did my top-up not work?"]),
]


def _user(request: dict) -> str:
    return request["messages"][-1]["content"]


def _system(request: dict) -> str:
    return request["messages"][0]["content"]


def test_share_phrase():
    assert share_phrase("A", "B", 0.8) == "80% A, 20% B"
    assert share_phrase("A", None, 1.0) == "100% A"


def test_class_cards_and_mixing_instruction_reach_the_lm():
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        pred = BorderlineGenerator()(class_cards=CARDS, majority_class="card_arrival",
                                     minority_class="card_delivery_estimate", majority_share=0.75, num_texts=3)
    request = lm.requests[-1]
    fields = parse_fields(_user(request))
    cards = json.loads(fields["class_cards"])
    assert [c["name"] for c in cards] == [c.name for c in CARDS]
    assert cards[1]["examples"] == CARDS[1].examples and cards[0]["description"] == CARDS[0].description
    assert fields["majority_share"] == "75% card_arrival, 25% card_delivery_estimate"
    assert fields["num_texts"] == "3"
    assert "belong" in _system(request) and "minority class" in _system(request)  # the docstring instruction
    assert request["temperature"] == 1.0
    assert len(pred.texts) == 3 and not any(t[0].isdigit() for t in pred.texts)  # numbering stripped


def test_generator_drops_seed_copies():
    responder = RuleResponder(generate=lambda f, n: ["When will my card get here?", "A brand new text"])
    with dspy.context(lm=scripted_lm(responder), adapter=dspy.JSONAdapter()):
        pred = BorderlineGenerator()(class_cards=CARDS, majority_class="card_arrival", minority_class="top_up_failed",
                                     majority_share=0.9)
    assert pred.texts == ["A brand new text"] and pred.dropped[0][1] == "seed_copy"


def test_relabel_answer_is_a_candidate_and_outsiders_are_refused():
    relabeler = Relabeler(CARDS)
    good = scripted_lm(RuleResponder(relabel=lambda text, cands: cands[-1]))
    with dspy.context(lm=good, adapter=dspy.JSONAdapter()):
        assert relabeler(text="anything").label == "top_up_failed"
    bad = scripted_lm(RuleResponder(relabel=lambda text, cands: "not_a_class"))
    with dspy.context(lm=bad, adapter=dspy.JSONAdapter()), pytest.raises(Exception, match="not_a_class|parse"):
        relabeler(text="anything")
    assert good.requests[-1]["temperature"] == 0.0


def test_relabel_retry_is_a_warmer_fresh_sample():
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        Relabeler(CARDS)(text="top_up_failed text", attempt=1)
    assert lm.requests[-1]["temperature"] == 0.7


def test_llama_cpp_schema_confines_label_and_list():
    schema = output_schema(relabel_signature_for(["a", "b"]))
    assert schema["properties"]["label"]["enum"] == ["a", "b"]
    texts = output_schema(GenerateBorderlineExamples)["properties"]["texts"]
    assert texts["minItems"] == 1
    import re

    pattern = re.compile(texts["items"]["pattern"])
    assert pattern.match("What does NASA stand for ?") and pattern.match("It's (fine), 100%!")
    bad = (", , ", "short", "a\nb line two", "tab\there is bad", '{"texts": 1}', "```json x", '"Quoted" text')
    assert not any(pattern.match(t) for t in bad)
    lm_kwargs: dict = {}
    LlamaCppJSONAdapter()._prepare_response_format(None, lm_kwargs, relabel_signature_for(["x"]))
    assert lm_kwargs["response_format"]["type"] == "json_object"
    assert lm_kwargs["response_format"]["schema"]["properties"]["label"]["const"] == "x"  # one candidate


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder()


def test_top_k_candidates_are_the_nearest_classes(encoder, data_dir):
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split

    split = few_shot_split(load_dataset("banking77", data_dir=data_dir), k=2, seed=0)
    selector = CandidateSelector(split.seeds_by_label(), encoder, top_k=5)
    cands = selector("I ordered my new card two weeks ago and it still has not arrived")
    assert len(cands) == 5 and len(set(cands)) == 5
    assert "card_arrival" in cands
    assert "age_limit" not in cands and "exchange_rate" not in cands


def test_top_k_reaches_the_prompt(encoder):
    seeds = {c.name: c.examples for c in CARDS}
    relabeler = Relabeler(CARDS, CandidateSelector(seeds, encoder, top_k=2))
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        pred = relabeler(text="my top-up did not work")
    offered = [c["name"] for c in json.loads(parse_fields(_user(lm.requests[-1]))["candidate_classes"])]
    assert offered == pred.candidates and len(offered) == 2 and "top_up_failed" in offered


def test_k_at_least_classes_offers_all_without_an_encoder():
    selector = CandidateSelector({c.name: c.examples for c in CARDS}, top_k=5)
    assert selector.encoder is None and selector("x") == [c.name for c in CARDS]


def test_promptmix_generates_then_relabels():
    responder = RuleResponder(generate=lambda f, n: ["my top_up_failed too", "still waiting"],
                              relabel=lambda text, cands: next((c for c in cands if c in text), cands[0]))
    with dspy.context(lm=scripted_lm(responder), adapter=dspy.JSONAdapter()):
        pred = PromptMix(CARDS)(majority_class="card_arrival", minority_class="top_up_failed", majority_share=0.8,
                                group=[c.name for c in CARDS])
    assert [(r["text"], r["label"]) for r in pred.rows] == [("my top_up_failed too", "top_up_failed"),
                                                            ("still waiting", "card_arrival")]
    assert len(PromptMix(CARDS).named_predictors()) == 2  # an optimizer sees both prompts


def test_describer_writes_one_sentence():
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        pred = ClassDescriber()(class_name="card_arrival", examples=CARDS[0].examples, other_classes=["x"])
    assert pred.description == "texts about card arrival"
    assert "card_arrival" in _user(lm.requests[-1])
