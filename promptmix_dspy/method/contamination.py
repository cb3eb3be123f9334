"""Contamination audit: generated texts that are test texts.

The LLM has seen the public benchmarks, and asked for new TREC questions it sometimes writes test questions
("Who invented the telephone?"). A student trained on them is scored on its own training data. Two kinds of
match, both against the dataset's test texts:

- **exact**: equal after ``normalize`` (lower case, alphanumerics only, single spaces): "Where is the Grand
  Canyon?" and "Where is the Grand Canyon ?" are one text;
- **near**: at least ``NEAR_MIN_WORDS`` words in the shorter text and a difflib ratio of the normalized texts of
  at least ``NEAR_RATIO``: the same sentence lightly edited. Short texts are only matched exactly: two short
  questions of one template ("What does IBM stand for?", "What does I.V. stand for?") are 0.91 alike and
  different questions. Candidates are found by a character n-gram TF-IDF cosine (scikit-learn) of at least
  ``PREFILTER``, so a pool of thousands of test texts costs one sparse product.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Sequence

from promptmix_dspy.method.cleanup import normalize

__all__ = ["NEAR_MIN_WORDS", "NEAR_RATIO", "Match", "RULE", "TestOverlap"]

NEAR_RATIO = 0.90
NEAR_MIN_WORDS = 8
PREFILTER = 0.6
RULE = (f"exact: equal after normalisation (lower case, alphanumerics only); near: at least {NEAR_MIN_WORDS} words "
        f"and a difflib ratio of at least {NEAR_RATIO:.2f} between the normalised texts")


@dataclass(frozen=True)
class Match:
    text: str
    test_text: str
    kind: str  # "exact" or "near"
    ratio: float

    def to_dict(self) -> dict:
        return {"text": self.text, "test_text": self.test_text, "kind": self.kind, "ratio": round(self.ratio, 4)}


class TestOverlap:
    """The test texts of a dataset, indexed once; ``matches(texts)`` finds the generated texts among them."""

    __test__ = False  # not a pytest class

    def __init__(self, test_texts: Sequence[str]):
        self.test_texts = list(dict.fromkeys(test_texts))
        self._exact = {normalize(t): t for t in self.test_texts}
        self._vectorizer = self._matrix = None

    def matches(self, texts: Sequence[str]) -> list[Match]:
        """One Match per text found in the test set (exact first), in the order of ``texts``."""
        found: dict[str, Match] = {}
        for text in texts:
            hit = self._exact.get(normalize(text))
            if hit is not None:
                found[text] = Match(text, hit, "exact", 1.0)
        rest = [t for t in dict.fromkeys(texts) if t not in found and len(normalize(t).split()) >= NEAR_MIN_WORDS]
        for text, test_text, ratio in self._near(rest):
            found[text] = Match(text, test_text, "near", ratio)
        return [found[t] for t in dict.fromkeys(texts) if t in found]

    def _near(self, texts: list[str]) -> list[tuple[str, str, float]]:
        if not texts or not self.test_texts:
            return []
        scores = (self._transform(texts) @ self._index().T).tocsr()
        out = []
        for row, text in enumerate(texts):
            start, end = scores.indptr[row], scores.indptr[row + 1]
            candidates = [(scores.data[k], scores.indices[k]) for k in range(start, end) if scores.data[k] >= PREFILTER]
            best = max(((self._ratio(text, self.test_texts[j]), j) for _, j in candidates), default=(0.0, -1))
            if best[0] >= NEAR_RATIO and len(normalize(self.test_texts[best[1]]).split()) >= NEAR_MIN_WORDS:
                out.append((text, self.test_texts[best[1]], best[0]))
        return out

    @staticmethod
    def _ratio(a: str, b: str) -> float:
        return difflib.SequenceMatcher(None, normalize(a), normalize(b), autojunk=False).ratio()

    def _index(self):
        if self._matrix is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), preprocessor=normalize)
            self._matrix = self._vectorizer.fit_transform(self.test_texts)
        return self._matrix

    def _transform(self, texts: list[str]):
        self._index()
        return self._vectorizer.transform(texts)
