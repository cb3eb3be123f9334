"""Clean-up of generated texts."""

from __future__ import annotations

import pytest

from promptmix_dspy.method.cleanup import clean_text, clean_texts, normalize


@pytest.mark.parametrize("raw, expected", [
    ('1. "Where is my card?" (80% card_arrival, 20% card_delivery_estimate)', "Where is my card?"),
    ("- Text 2: When will it come? - 70% A, 30% B", "When will it come?"),
    ("3) How do I top up?", "How do I top up?"),
    ("“Curly quotes”", "Curly quotes"),
    ("* bullet   with   spaces", "bullet with spaces"),
    ("Who wrote Hamlet (the play)?", "Who wrote Hamlet (the play)?"),  # brackets without a share stay
    ("What is 50% of 10?", "What is 50% of 10?"),  # a percentage that is content stays
])
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_drops_empties_duplicates_seed_copies_and_says_why():
    result = clean_texts(['1. Where is my card?', '2. where is my card', '""', 'x', 'Seed text!',
                          'A new question?'], seeds=["seed text"])
    assert result.kept == ["Where is my card?", "A new question?"]
    assert [reason for _, reason in result.dropped] == ["duplicate", "empty", "too_short", "seed_copy"]


def test_duplicates_across_calls_via_shared_seen_set():
    seen: set[str] = set()
    clean_texts(["Alpha question?"], seen=seen)
    assert clean_texts(["alpha question"], seen=seen).kept == []


def test_one_string_holding_a_numbered_list_is_split():
    assert clean_texts(["1. First text\n2. Second text\n3. Third text"]).kept == ["First text", "Second text",
                                                                               "Third text"]


def test_normalize_ignores_case_and_punctuation():
    assert normalize("Where's  my CARD?") == normalize("where s my card")
