"""A tiny random BERT with a vocab written here, and a small three-class data set it can learn (no hub)."""

from __future__ import annotations

import random
from pathlib import Path

from promptmix_dspy.data.types import Example

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASS_WORDS = {
    "LOC": ["where", "city", "country", "river", "mountain", "capital"],
    "HUM": ["who", "person", "president", "author", "singer", "inventor"],
    "NUM": ["how", "many", "much", "year", "number", "population"],
}
FILLER = ["the", "a", "is", "was", "of", "in", "what"]
LABELS = list(CLASS_WORDS)


def make_examples(per_class: int, seed: int) -> list[Example]:
    """Each text mixes three words of its class with two filler words, so the class is learnable."""
    rng = random.Random(seed)
    rows = []
    for label, words in CLASS_WORDS.items():
        for _ in range(per_class):
            tokens = rng.sample(words, 3) + rng.sample(FILLER, 2)
            rng.shuffle(tokens)
            rows.append(Example(" ".join(tokens), label))
    rng.shuffle(rows)
    return rows


def make_tiny_bert(folder: Path) -> Path:
    """Save a randomly initialised 2-layer BERT (hidden 64) and a tokenizer built from a local vocab.txt."""
    import torch
    import transformers
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + FILLER + [w for words in CLASS_WORDS.values() for w in words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if int(transformers.__version__.split(".")[0]) >= 5:
        tokenizer = transformers.BertTokenizer(vocab=str(folder / "vocab.txt"))
    else:
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
