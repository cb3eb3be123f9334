"""Clean-up of generated texts: only what the generator added is stripped, real texts survive intact."""

from __future__ import annotations

import pytest

from promptmix_dspy.method.cleanup import clean_text, clean_texts, is_near_copy, normalize

BANKING = ("card_arrival", "card_delivery_estimate")
TREC = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


@pytest.mark.parametrize("raw, expected", [
    ('1. "Where is my card?" (80% card_arrival, 20% card_delivery_estimate)', "Where is my card?"),
    ("- Text 2: When will it come? - 70% card_arrival, 30% card_delivery_estimate", "When will it come?"),
    ("3) How do I top up?", "How do I top up?"),
    ("(4) Has my card shipped yet? [100% card_arrival]", "Has my card shipped yet?"),
    ("b) Where is my new card?", "Where is my new card?"),
    ("“Where is my card?”", "Where is my card?"),
    ("* bullet   with   spaces", "bullet with spaces"),
    ("Question: When does it arrive? card_arrival: 80%, card_delivery_estimate: 20%", "When does it arrive?"),
])
def test_what_the_generator_adds_is_stripped(raw, expected):
    assert clean_text(raw, BANKING) == expected


@pytest.mark.parametrize("text", [
    "Interest rates rose - 5% in one year, why?",
    "What is the ratio: 50% or more?",
    '"Hi" she said "bye"',
    "A. Lincoln was president",
    "Who wrote Hamlet (the play)?",
    "What is 50% of 10?",
    "10:30 is when the shop opens, right?",
    "I am 100% sure my card has not arrived",
    "'Tis the season to be jolly, says who?",
    "the film 's director , who also wrote it , is 80% responsible for its failure .",
])
def test_real_question_and_sentence_shapes_survive(text):
    assert clean_text(text, TREC + BANKING) == text


def test_a_percentage_note_without_a_class_name_is_content():
    assert clean_text("Growth slowed (80% of forecasts agreed)", TREC) == "Growth slowed (80% of forecasts agreed)"


def test_drops_empties_duplicates_seed_copies_and_says_why():
    result = clean_texts(['1. Where is my card?', '2. where is my card', '""', 'x', 'Seed text!',
                          'A new question?'], seeds=["seed text"])
    assert result.kept == ["Where is my card?", "A new question?"]
    assert [reason for _, reason in result.dropped] == ["duplicate", "empty", "too_short", "seed_copy"]


def test_copies_of_any_seed_and_near_copies_are_dropped():
    seeds = ["How does a rainbow form ?", "What does NASA stand for ?"]  # of two different classes
    result = clean_texts(["How does a rainbow forms?", "what does nasa stand for", "What does NATO stand for?",
                          "Why is the sky blue?"], seeds=seeds)
    assert result.kept == ["What does NATO stand for?", "Why is the sky blue?"]
    assert [reason for _, reason in result.dropped] == ["seed_copy", "seed_copy"]


def test_class_names_alone_and_description_copies_are_dropped():
    result = clean_texts(["positive", "Subjective", "objective .", "card arrival",
                          "opinionated sentences from movie reviews in which the critic evaluates a film",
                          "The acting is wooden and the plot drags."],
                         class_names=["subjective", "objective", "card_arrival"],
                         descriptions=["opinionated sentences from movie reviews in which the critic evaluates or "
                                       "reacts to a film, its acting, script, or direction"])
    assert result.kept == ["positive", "The acting is wooden and the plot drags."]
    assert [reason for _, reason in result.dropped] == ["class_name", "class_name", "class_name",
                                                        "description_copy"]


def test_near_duplicates_across_calls_via_shared_seen_set():
    seen: set[str] = set()
    clean_texts(["Alpha question about the sky?"], seen=seen)
    assert clean_texts(["alpha question about the skys"], seen=seen).dropped[0][1] == "duplicate"
    assert clean_texts(["Beta question about the sea?"], seen=seen).kept == ["Beta question about the sea?"]


def test_one_string_holding_a_numbered_list_is_split():
    assert clean_texts(["1. First text\n2. Second text\n3. Third text"]).kept == ["First text", "Second text",
                                                                               "Third text"]


def test_normalize_ignores_case_and_punctuation():
    assert normalize("Where's  my CARD?") == normalize("where s my card")


def test_near_copy_is_about_normalized_similarity():
    assert is_near_copy("Where is my card??", ["where is my card"])
    assert not is_near_copy("Where is my parcel?", ["where is my card"])
