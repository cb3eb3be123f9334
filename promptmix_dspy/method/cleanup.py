"""Clean-up of generated texts: strip numbering, quotes and mixing notes; drop empties, duplicates, seed copies.

Pure functions. ``clean_texts`` returns what it kept and, for every text it dropped, the reason, so a run can
report why examples were lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["CleanResult", "clean_text", "clean_texts", "normalize"]

_NUMBERING = re.compile(r"^\s*(?:[-*•·]+|\(?\d{1,3}[.):\]]|[a-zA-Z][.)](?=\s))\s*")
_LABEL_PREFIX = re.compile(r"^\s*(?:text|utterance|example|sentence|question|tweet)\s*\d*\s*[:=-]\s*", re.I)
_SHARE_NOTE = re.compile(r"\s*[(\[{][^()\[\]{}]*\d{1,3}\s*%[^()\[\]{}]*[)\]}]\s*")
_TRAILING_SHARE = re.compile(r"\s*[-–—|:]\s*\d{1,3}\s*%.*$")
_QUOTES = "\"'“”‘’«»`"
_SPACE = re.compile(r"\s+")
MIN_CHARS = 3


@dataclass
class CleanResult:
    kept: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (raw text, reason)


def normalize(text: str) -> str:
    """The key two texts are duplicates under: lower case, alphanumerics only, single spaces."""
    return _SPACE.sub(" ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def clean_text(raw: str) -> str:
    """Strip list numbering, 'Text 1:' prefixes, '(80% A, 20% B)' notes and wrapping quotes."""
    text = _SPACE.sub(" ", str(raw)).strip()
    for _ in range(2):  # numbering inside quotes, or quotes inside numbering
        text = _NUMBERING.sub("", text)
        text = _LABEL_PREFIX.sub("", text)
        text = _SHARE_NOTE.sub(" ", text).strip()
        text = _TRAILING_SHARE.sub("", text).strip()
        text = _strip_quotes(text)
    return text.strip()


def _strip_quotes(text: str) -> str:
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def _split_lines(raw_texts: Iterable[str]) -> list[str]:
    """An LM sometimes returns one string holding a numbered list: split it into its lines."""
    out = []
    for raw in raw_texts:
        lines = [ln for ln in str(raw).splitlines() if ln.strip()]
        out.extend(lines if len(lines) > 1 else [str(raw)])
    return out


def clean_texts(raw_texts: Iterable[str], *, seen: set[str] | None = None,
                seeds: Iterable[str] = (), max_chars: int = 500) -> CleanResult:
    """Clean each text; drop empty, too short or long, duplicate (within ``seen``) and seed-copy texts.

    ``seen`` holds normalized keys of texts kept before (it is updated), so duplicates across calls are caught.
    """
    seen = set() if seen is None else seen
    seed_keys = {normalize(s) for s in seeds}
    result = CleanResult()
    for raw in _split_lines(raw_texts):
        text = clean_text(raw)
        reason = _drop_reason(text, seen, seed_keys, max_chars)
        if reason:
            result.dropped.append((str(raw), reason))
            continue
        seen.add(normalize(text))
        result.kept.append(text)
    return result


def _drop_reason(text: str, seen: set[str], seed_keys: set[str], max_chars: int) -> str | None:
    key = normalize(text)
    if not key:
        return "empty"
    if len(text) < MIN_CHARS:
        return "too_short"
    if len(text) > max_chars:
        return "too_long"
    if key in seed_keys:
        return "seed_copy"
    if key in seen:
        return "duplicate"
    return None
