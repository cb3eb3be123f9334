"""Easy data augmentation (EDA; Wei and Zou, EMNLP 2019): the classic baseline the paper compares against.

Four operations on a sentence, each changing about ``alpha`` of its words: synonym replacement (SR), random
insertion of a synonym (RI), random swap (RS) and random deletion (RD). As in the authors' code, each new
sentence comes from one operation, about a quarter of them from each, and the text is lower-cased and reduced to
letters, digits and spaces.

WordNet, EDA's synonym source, is not installable offline, so synonyms come from ``EmbeddingSynonyms``: the
nearest whole-word tokens in the input-embedding space of the local all-MiniLM-L6-v2 (``city`` -> ``cities``,
``urban``, ``town``). These are related words rather than strict synonyms (antonyms such as ``boring`` ->
``exciting`` occur, as with any distributional neighbours); any object with ``synonyms(word) -> list[str]``
can replace it. All randomness comes from a ``random.Random`` passed in.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from promptmix_dspy.data.types import Example

__all__ = ["EDAConfig", "EmbeddingSynonyms", "STOPWORDS", "SynonymSource", "augment_examples", "eda_sentence",
           "random_deletion", "random_insertion", "random_swap", "synonym_replacement", "tokens"]

logger = logging.getLogger(__name__)

# The stop-word list of the EDA authors' code (never replaced by a synonym).
STOPWORDS = frozenset("""i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
she her hers herself it its itself they them their theirs themselves what which who whom this that these those am
is are was were be been being have has had having do does did doing a an the and but if or because as until while
of at by for with about against between into through during before after above below to from up down in out on off
over under again further then once here there when where why how all any both each few more most other some such
no nor not only own same so than too very s t can will just don should now""".split())


class SynonymSource(Protocol):
    def synonyms(self, word: str) -> list[str]: ...


@dataclass(frozen=True)
class EDAConfig:
    """EDA settings: the share of words each operation changes (the paper's alpha) and new texts per seed."""

    alpha_sr: float = 0.1
    alpha_ri: float = 0.1
    alpha_rs: float = 0.1
    p_rd: float = 0.1
    per_example: int = 5

    def __post_init__(self) -> None:
        for name in ("alpha_sr", "alpha_ri", "alpha_rs", "p_rd"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"EDAConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.per_example < 1:
            raise ValueError(f"EDAConfig.per_example must be >= 1, got {self.per_example}")


def tokens(text: str) -> list[str]:
    """EDA's normalisation: lower case, letters and digits only, split on whitespace."""
    return re.sub(r"[^a-z0-9 ]+", " ", text.lower().replace("'", "")).split()


def _count(alpha: float, n_words: int) -> int:
    return max(1, int(alpha * n_words))


def synonym_replacement(words: list[str], n: int, source: SynonymSource, rng: random.Random) -> list[str]:
    """Replace up to n distinct non-stop words that have synonyms, each by a random synonym."""
    out = list(words)
    candidates = sorted({w for w in words if w not in STOPWORDS})
    rng.shuffle(candidates)
    replaced = 0
    for word in candidates:
        options = source.synonyms(word)
        if options:
            choice = rng.choice(options)
            out = [choice if w == word else w for w in out]
            replaced += 1
        if replaced >= n:
            break
    return out


def random_insertion(words: list[str], n: int, source: SynonymSource, rng: random.Random) -> list[str]:
    """Insert, n times, a synonym of a random word at a random position (up to 10 tries each)."""
    out = list(words)
    for _ in range(n):
        for _try in range(10):
            options = source.synonyms(rng.choice(out)) if out else []
            if options:
                out.insert(rng.randint(0, len(out)), rng.choice(options))
                break
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Swap two random positions, n times."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Drop each word with probability p; never return an empty sentence."""
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if rng.random() > p]
    return kept or [rng.choice(words)]


def eda_sentence(text: str, config: EDAConfig, source: SynonymSource, rng: random.Random) -> list[str]:
    """``config.per_example`` distinct new versions of text (fewer if the operations keep repeating it)."""
    words = tokens(text)
    if not words:
        return []
    ops = _operations(words, config, source)
    per_op = config.per_example // len(ops) + 1
    made = [" ".join(op(rng)) for op in ops for _ in range(per_op)]
    rng.shuffle(made)
    original = " ".join(words)
    unique = [t for t in dict.fromkeys(made) if t and t != original]
    return unique[: config.per_example]


def _operations(words: list[str], config: EDAConfig,
                source: SynonymSource) -> list[Callable[[random.Random], list[str]]]:
    n = len(words)
    return [lambda rng: synonym_replacement(words, _count(config.alpha_sr, n), source, rng),
            lambda rng: random_insertion(words, _count(config.alpha_ri, n), source, rng),
            lambda rng: random_swap(words, _count(config.alpha_rs, n), rng),
            lambda rng: random_deletion(words, config.p_rd, rng)]


def augment_examples(examples: Sequence[Example], config: EDAConfig, source: SynonymSource,
                     rng: random.Random) -> list[Example]:
    """EDA versions of every example, with the example's label (the seeds themselves are not included)."""
    return [Example(text, ex.label) for ex in examples for text in eda_sentence(ex.text, config, source, rng)]


class EmbeddingSynonyms:
    """Nearest whole-word tokens in a BERT-family model's input-embedding space (default: the local MiniLM)."""

    def __init__(self, model: str | None = None, k: int = 5, min_similarity: float = 0.45):
        from transformers import AutoModel, AutoTokenizer

        from promptmix_dspy.method.candidates import default_encoder_path

        path = model or default_encoder_path()
        vocab = AutoTokenizer.from_pretrained(path).get_vocab()
        weights = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach()
        self.index = {w: i for w, i in vocab.items() if w.isalpha() and len(w) >= 3 and w not in STOPWORDS}
        self.words = list(self.index)
        self.row = {w: i for i, w in enumerate(self.words)}
        self.matrix = _normalise(weights[[self.index[w] for w in self.words]])
        self.k, self.min_similarity = k, min_similarity
        self._cache: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def synonyms(self, word: str) -> list[str]:
        with self._lock:
            if word not in self._cache:
                self._cache[word] = self._nearest(word)
            return self._cache[word]

    def _nearest(self, word: str) -> list[str]:
        if word not in self.index:
            return []
        scores = self.matrix @ self.matrix[self.row[word]]
        top = scores.topk(self.k + 1)
        return [self.words[j] for s, j in zip(top.values.tolist(), top.indices.tolist())
                if self.words[j] != word and s >= self.min_similarity][: self.k]


def _normalise(matrix):
    import torch

    return torch.nn.functional.normalize(matrix.float(), dim=-1)
