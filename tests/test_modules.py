"""Modules on a scripted LM: what reaches the prompt and where, relabeling confined to candidates, batches,
near-miss labels, the worked example, top-k choice."""

from __future__ import annotations

import re

import dspy
import pytest

from promptmix_dspy.llm.adapters import LlamaCppAdapter, PromptMixAdapter, label_mappings, nearest_label, output_schema
from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder, plan_batches
from promptmix_dspy.method.modules import (
    BorderlineGenerator,
    ClassDescriber,
    PromptMix,
    Relabeler,
    seed_demo,
    share_phrase,
)
from promptmix_dspy.method.signatures import ClassCard, GenerateBorderlineExamples, relabel_signature_for
from promptmix_dspy.testing import RuleResponder, candidate_names, numbered, parse_fields, scripted_lm

CARDS = [
    ClassCard(name="card_arrival", description="asking when a new card will arrive",
              examples=["I am still waiting on my card?", "When will my card get here?"]),
    ClassCard(name="card_delivery_estimate", description="asking how long card delivery usually takes",
              examples=["How long does a card take to be delivered?", "What is the delivery time for cards?"]),
    ClassCard(name="top_up_failed", description="a top-up that did not go through",
              examples=["My top up failed", "Why did my top-up not work?"]),
]
TASK = "The texts are customer messages to a bank, classified by intent."


def _user(request: dict) -> str:
    return request["messages"][-1]["content"]


def _system(request: dict) -> str:
    return request["messages"][0]["content"]


def test_share_phrase():
    assert share_phrase("A", "B", 0.8) == "80% A, 20% B"
    assert share_phrase("A", None, 1.0) == "100% A"


def test_generation_prompt_puts_task_and_cards_first_and_the_mix_request_last():
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=PromptMixAdapter()):
        pred = BorderlineGenerator(task=TASK)(class_cards=CARDS, majority_class="card_arrival",
                                              minority_class="card_delivery_estimate", majority_share=0.75,
                                              num_texts=3)
    request = lm.requests[-1]
    system, user = _system(request), _user(request)
    assert system.startswith(TASK) and "minority class" in system  # the task, then the docstring instruction
    assert candidate_names(parse_fields(system)["class_cards"]) == [c.name for c in CARDS]
    assert CARDS[1].examples[0] in system and CARDS[0].description in system
    fields = parse_fields(user)
    assert list(fields) == ["majority_class", "minority_class", "majority_share", "already_written", "num_texts"]
    assert fields["majority_share"] == "75% card_arrival, 25% card_delivery_estimate" and fields["num_texts"] == "3"
    assert request["temperature"] == 1.0
    assert len(pred.texts) == 3 and not any(t[0].isdigit() for t in pred.texts)  # numbering stripped


def test_two_calls_for_one_class_share_the_whole_prefix_up_to_the_request():
    lm = scripted_lm()
    generator = BorderlineGenerator(task=TASK)
    with dspy.context(lm=lm, adapter=PromptMixAdapter()):
        generator(class_cards=CARDS, majority_class="card_arrival", minority_class="top_up_failed",
                  majority_share=0.9, sample_index=0)
        generator(class_cards=CARDS, majority_class="card_arrival", minority_class="card_delivery_estimate",
                  majority_share=0.6, sample_index=1)
    first, second = lm.requests
    assert _system(first) == _system(second) and _user(first) != _user(second)


def test_generator_drops_copies_of_any_classes_seeds():
    other_class_seed = "Why did my top-up not work?"
    responder = RuleResponder(generate=lambda f, n: ["When will my card get here?", other_class_seed,
                                                     "A brand new text about cards"])
    generator = BorderlineGenerator(all_seeds=[t for c in CARDS for t in c.examples], class_cards=CARDS)
    with dspy.context(lm=scripted_lm(responder), adapter=PromptMixAdapter()):
        pred = generator(class_cards=CARDS[:2], majority_class="card_arrival", minority_class=None,
                         majority_share=1.0)
    assert pred.texts == ["A brand new text about cards"]
    assert [reason for _, reason in pred.dropped] == ["seed_copy", "seed_copy"]


def test_relabel_answer_is_a_candidate_and_outsiders_are_refused():
    relabeler = Relabeler(CARDS)
    good = scripted_lm(RuleResponder(relabel=lambda text, cands: cands[-1]))
    with dspy.context(lm=good, adapter=PromptMixAdapter()):
        assert relabeler(text="anything").label == "top_up_failed"
    bad = scripted_lm(RuleResponder(relabel=lambda text, cands: "not_a_class"))
    with dspy.context(lm=bad, adapter=PromptMixAdapter()), pytest.raises(Exception, match="not_a_class|parse"):
        relabeler(text="anything")
    assert good.requests[-1]["temperature"] == 0.0


def test_a_near_miss_label_maps_to_the_candidate_it_means_and_is_recorded():
    assert nearest_label("Location", ["ABBR", "LOC", "NUM"]) == "LOC"
    assert nearest_label("top up failed", ["card_arrival", "top_up_failed"]) == "top_up_failed"
    assert nearest_label("card", ["card_arrival", "card_delivery_estimate"]) is None  # ambiguous
    assert nearest_label("weather", ["card_arrival", "top_up_failed"]) is None
    lm = scripted_lm(RuleResponder(relabel=lambda text, cands: "Top Up Failed"))
    with dspy.context(lm=lm, adapter=PromptMixAdapter()), label_mappings() as mapped:
        assert Relabeler(CARDS)(text="my top-up").label == "top_up_failed"
    assert mapped == [("Top Up Failed", "top_up_failed")]


def test_relabel_retry_is_a_warmer_fresh_sample():
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=PromptMixAdapter()):
        Relabeler(CARDS)(text="top_up_failed text", attempt=1)
    assert lm.requests[-1]["temperature"] == 0.7


def test_a_batch_is_labelled_in_one_call_and_a_missing_answer_is_none():
    lm = scripted_lm(RuleResponder(relabel=lambda text, cands: next(c for c in cands if c in text)))
    texts = ["about top_up_failed", "about card_arrival", "about card_delivery_estimate"]
    with dspy.context(lm=lm, adapter=PromptMixAdapter()):
        pred = Relabeler(CARDS, task=TASK)(texts=texts)
    assert pred.classes == ["top_up_failed", "card_arrival", "card_delivery_estimate"] and len(lm.requests) == 1
    assert numbered(parse_fields(_user(lm.requests[0]))["texts"]) == texts  # the texts come last, numbered
    short = scripted_lm(lambda messages, params: '{"classes_for_texts": {"1": "card_arrival", "3": "card_arrival"}}')
    with dspy.context(lm=short, adapter=PromptMixAdapter()):
        assert Relabeler(CARDS)(texts=texts).classes == ["card_arrival", None, "card_arrival"]


def test_the_batched_answer_schema_has_one_key_per_text_each_confined_to_the_candidates():
    schema = output_schema(relabel_signature_for(["a", "b"]), {"texts": ["x", "y", "z"]})
    answer = schema["properties"]["classes_for_texts"]
    assert list(answer["properties"]) == answer["required"] == ["1", "2", "3"]
    assert answer["additionalProperties"] is False
    assert all(v["enum"] == ["a", "b"] for v in answer["properties"].values())


def test_the_seeds_are_one_worked_example_before_the_texts_and_never_the_text_itself():
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=PromptMixAdapter()):
        Relabeler(CARDS)(texts=["My top up failed", "a new text"])
    messages = lm.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    demo = numbered(parse_fields(messages[1]["content"])["texts"])
    assert sorted(demo) == sorted(t for c in CARDS for t in c.examples if t != "My top up failed")
    assert "Examples:" not in _system(lm.requests[0])  # the cards carry descriptions; the seeds are the demo
    assert seed_demo(CARDS).texts == seed_demo(list(CARDS)).texts  # deterministic


def test_llama_cpp_schema_confines_label_and_list():
    texts = output_schema(GenerateBorderlineExamples, {"num_texts": 3})["properties"]["texts"]
    assert texts["minItems"] == texts["maxItems"] == 3
    pattern = re.compile(texts["items"]["pattern"])
    assert pattern.match("What does NASA stand for ?") and pattern.match("It's (fine), 100%!")
    assert pattern.match("@united my bag is lost #fail")
    bad = (", , ", "short", "a\nb line two", "tab\there is bad", '{"texts": 1}', "```json x", '"Quoted" text')
    assert not any(pattern.match(t) for t in bad)
    lm_kwargs: dict = {}
    LlamaCppAdapter()._prepare_response_format(None, lm_kwargs, relabel_signature_for(["x"]))
    assert lm_kwargs["response_format"]["type"] == "json_object"


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
    batches = plan_batches(["my card has not arrived", "card still not here", "what is the exchange rate?"],
                           selector, size=2)
    assert sorted(map(len, batches)) == [1, 2] and ["what is the exchange rate?"] in batches
    assert selector.for_batch(batches[0]) == [c for c in split.labels if c in selector.for_batch(batches[0])]


def test_the_library_default_offers_the_five_nearest_classes_like_the_cli(encoder):
    cards = [ClassCard(name=f"class_{i}", description=f"texts about topic {i}", examples=[f"topic {i} text"])
             for i in range(8)]
    relabeler = Relabeler(cards)
    assert relabeler.selector.top_k == 5 and len(relabeler.selector("topic 3 text")) == 5
    assert len(PromptMix(cards).relabeler.selector("topic 3 text")) == 5


def test_top_k_reaches_the_prompt_in_label_order(encoder):
    seeds = {c.name: c.examples for c in CARDS}
    relabeler = Relabeler(CARDS, CandidateSelector(seeds, encoder, top_k=2))
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=PromptMixAdapter()):
        pred = relabeler(texts=["my top-up did not work", "my top up failed again"])
    offered = candidate_names(parse_fields(_system(lm.requests[-1]))["candidate_classes"])
    assert offered == pred.candidates and "top_up_failed" in offered and len(offered) <= 3
    assert offered == [c.name for c in CARDS if c.name in offered]  # the dataset's order: a stable prefix


def test_k_at_least_classes_offers_all_without_an_encoder():
    selector = CandidateSelector({c.name: c.examples for c in CARDS}, top_k=5)
    assert selector.encoder is None and selector("x") == [c.name for c in CARDS]


def test_promptmix_generates_then_relabels():
    responder = RuleResponder(generate=lambda f, n: ["my top_up_failed too", "still waiting for it"],
                              relabel=lambda text, cands: next((c for c in cands if c in text), cands[0]))
    with dspy.context(lm=scripted_lm(responder), adapter=PromptMixAdapter()):
        pred = PromptMix(CARDS)(majority_class="card_arrival", minority_class="top_up_failed", majority_share=0.8,
                                group=[c.name for c in CARDS])
    assert [(r["text"], r["label"]) for r in pred.rows] == [("my top_up_failed too", "top_up_failed"),
                                                            ("still waiting for it", "card_arrival")]
    # an optimizer sees every prompt: the generator's, the one-text relabeler's and the batched relabeler's
    assert [name for name, _ in PromptMix(CARDS).named_predictors()] == ["generator.generate", "relabeler.classify",
                                                                         "relabeler.relabel"]


def test_describer_writes_one_sentence():
    lm = scripted_lm()
    with dspy.context(lm=lm, adapter=PromptMixAdapter()):
        pred = ClassDescriber()(class_name="card_arrival", examples=CARDS[0].examples, other_classes=["x"])
    assert pred.description == "texts about card arrival"
