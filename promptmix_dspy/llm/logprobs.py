"""Class probabilities from one answer's logprobs.

A one-label answer is as short as the label, and its first token tells the class: each class is answered by its
name where the candidates' names start with distinct letters, else by a one-letter code (method/signatures.py,
``answer_codes``). The probabilities are read from the first answer token's ``top_logprobs`` (OpenAI's shape,
which litellm passes through and llama.cpp's server returns): every alternative token that stands for exactly one
class (its code, or a prefix of its name, or the name followed by more) adds its probability to that class; the
rest (other words, tokens shared by two names) is left out; the result is renormalised over the candidates.
llama.cpp's values come from the raw logits, before the grammar and the temperature, so the renormalisation is
over the allowed answers. No logprobs (a provider without them, an answer served from an older cache) or no
alternative standing for a class gives None: the run then keeps the answer as a hard label.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["TOP_LOGPROBS", "answer_probabilities", "token_alternatives"]

TOP_LOGPROBS = 20  # OpenAI's maximum; enough for a top-5 candidate set and the variants of each answer


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def token_alternatives(logprobs: Any, completion: str) -> list[tuple[str, float]] | None:
    """(token, logprob) alternatives of the answer's first non-blank token, with the text of that token before
    the answer starts (a quote, a space) removed; None without logprobs."""
    content = _get(logprobs, "content") if logprobs is not None else None
    if not content:
        return None
    for entry in content:
        token = _get(entry, "token") or ""
        if token.strip():
            lead = token[: len(token) - len(token.lstrip(" \n\t\"'`*"))]
            alternatives = _get(entry, "top_logprobs") or [{"token": token, "logprob": _get(entry, "logprob")}]
            out = []
            for alt in alternatives:
                text, value = _get(alt, "token") or "", _get(alt, "logprob")
                if value is not None and text.startswith(lead):
                    out.append((text[len(lead):], float(value)))
            return out
    return None


def _stands_for(token: str, names: Sequence[str], codes: dict[str, str] | None) -> str | None:
    text = token.strip().lower()
    if not text:
        return None
    if codes:
        hits = [n for n in names if text == codes[n].lower() or
                (text.startswith(codes[n].lower()) and not text[len(codes[n]):][:1].isalnum())]
    else:
        hits = [n for n in names if n.lower().startswith(text) or text.startswith(n.lower())]
    return hits[0] if len(hits) == 1 else None


def answer_probabilities(logprobs: Any, completion: str, names: Sequence[str],
                         codes: dict[str, str] | None = None) -> dict[str, float] | None:
    """{class: probability} over ``names`` (summing to 1), or None (module docstring)."""
    alternatives = token_alternatives(logprobs, completion)
    if not alternatives:
        return None
    mass = {name: 0.0 for name in names}
    for token, value in alternatives:
        name = _stands_for(token, names, codes)
        if name is not None:
            mass[name] += math.exp(value)
    total = sum(mass.values())
    if not total > 0:
        return None
    return {name: m / total for name, m in mass.items()}
