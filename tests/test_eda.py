"""Easy data augmentation: the four operations, seeding, labels, and the MiniLM synonym source."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from promptmix_dspy.data.types import Example
from promptmix_dspy.experiments.eda import (
    STOPWORDS,
    EDAConfig,
    EmbeddingSynonyms,
    augment_examples,
    eda_sentence,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
    tokens,
)


class DictSynonyms:
    def __init__(self, table: dict[str, list[str]]):
        self.table = table

    def synonyms(self, word: str) -> list[str]:
        return self.table.get(word, [])


SOURCE = DictSynonyms({"city": ["town"], "largest": ["biggest"], "river": ["stream", "creek"], "the": ["a"]})
WORDS = "what is the largest city on the river".split()


def test_tokens_lowercase_and_keep_only_letters_digits_spaces():
    assert tokens("What's the U.S. capital, in 1999?") == ["whats", "the", "u", "s", "capital", "in", "1999"]


def test_synonym_replacement_replaces_content_words_only():
    out = synonym_replacement(WORDS, 2, SOURCE, random.Random(0))
    changed = [(a, b) for a, b in zip(WORDS, out) if a != b]
    assert len(changed) == 2 and len(out) == len(WORDS)
    assert all(a not in STOPWORDS and b in SOURCE.synonyms(a) for a, b in changed)


def test_random_insertion_adds_synonyms_of_words_in_the_sentence():
    out = random_insertion(WORDS, 3, SOURCE, random.Random(1))
    added = Counter(out) - Counter(WORDS)
    assert sum(added.values()) == 3
    assert all(any(w in SOURCE.synonyms(x) for x in WORDS) for w in added)


def test_random_swap_keeps_the_words():
    out = random_swap(WORDS, 2, random.Random(2))
    assert sorted(out) == sorted(WORDS) and out != WORDS


def test_random_deletion_never_empties_a_sentence():
    assert random_deletion(WORDS, 0.0, random.Random(3)) == WORDS
    one = random_deletion(WORDS, 1.0, random.Random(3))
    assert len(one) == 1 and one[0] in WORDS
    assert random_deletion(["alone"], 0.9, random.Random(3)) == ["alone"]


def test_eda_sentence_is_seeded_distinct_and_never_the_original():
    config = EDAConfig(per_example=4)
    text = "What is the largest city on the river Nile?"
    first = eda_sentence(text, config, SOURCE, random.Random(7))
    assert first == eda_sentence(text, config, SOURCE, random.Random(7))
    assert first != eda_sentence(text, config, SOURCE, random.Random(8))
    assert len(first) == 4 == len(set(first))
    assert " ".join(tokens(text)) not in first


def test_augment_examples_keeps_labels():
    seeds = [Example("Who wrote the river song?", "HUM"), Example("Where is the largest city?", "LOC")]
    out = augment_examples(seeds, EDAConfig(per_example=3), SOURCE, random.Random(0))
    assert Counter(ex.label for ex in out) == {"HUM": 3, "LOC": 3}


@pytest.mark.parametrize("bad", [{"alpha_sr": 1.5}, {"p_rd": -0.1}, {"per_example": 0}])
def test_config_names_the_bad_value(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        EDAConfig(**bad)


def test_embedding_synonyms_from_the_packaged_minilm():
    source = EmbeddingSynonyms(k=5)
    near = source.synonyms("city")
    assert "city" not in near and 1 <= len(near) <= 5
    assert {"cities", "town", "urban"} & set(near)
    assert source.synonyms("xqzvt") == [] and source.synonyms("the") == []
