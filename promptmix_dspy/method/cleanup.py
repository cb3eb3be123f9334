"""Clean-up of generated texts: strip only what the generator added, then drop what must not be trained on.

What the generator adds, in the forms it writes them: list numbering at the start ("1.", "2)", "(3)", "-",
"a)"), a "Text 1:" label, quotes wrapped around the whole text, and a mix note naming the classes ("(80% ABBR,
20% DESC)", "- 70% A, 30% B" at the end). A note is only stripped when it names one of the dataset's classes,
so content such as "rose - 5% in one year" or "50% or more" stays.

What is dropped, each with its reason: empty, too short or long, a class name alone, a copy of a class
description, a copy or near-copy of any seed (every class's, normalized), and a duplicate or near-duplicate of
a text kept before. ``clean_texts`` returns what it kept and why the rest went, so a run can report it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["NEAR_COPY", "CleanResult", "clean_text", "clean_texts", "is_near_copy", "normalize"]

_NUMBERING = re.compile(r"^\s*(?:[-*•·]+\s+|\(?\d{1,2}[.)\]:]\s+|\(\d{1,2}\)\s*|\(?[a-z]\)\s+|[a-z]\.\s+)")
_LABEL_PREFIX = re.compile(r"^\s*(?:text|utterance|example|sentence|question|tweet)\s*#?\d*\s*:\s*", re.I)
_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "`": "`", "”": "”"}
_SPACE = re.compile(r"\s+")
MIN_CHARS = 3
NEAR_COPY = 0.92  # difflib ratio of normalized texts at or above which two texts are the same text edited


@dataclass
class CleanResult:
    kept: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (raw text, reason)


def normalize(text: str) -> str:
    """The key two texts are duplicates under: lower case, alphanumerics only, single spaces."""
    return _SPACE.sub(" ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def _mix_note(class_names: Sequence[str]) -> re.Pattern | None:
    """'(80% A, 20% B)', '[100% A]', '- 70% A / 30% B' and 'A: 80%, B: 20%' where A, B are class names."""
    if not class_names:
        return None
    names = "|".join(re.escape(n) for n in sorted(class_names, key=len, reverse=True))
    share = rf"(?:\d{{1,3}}\s*%\s*(?:of\s+)?(?:{names})|(?:{names})\s*[:=]?\s*\d{{1,3}}\s*%)"
    note = rf"{share}(?:\s*(?:,|/|and|&|\+|;)\s*{share})*"
    return re.compile(rf"\s*(?:[(\[{{]\s*{note}\s*[)\]}}]|(?:^|[-–—|:]|\s)\s*{note})\s*[.]?\s*$", re.I)


def clean_text(raw: str, class_names: Sequence[str] = ()) -> str:
    """Strip list numbering, 'Text 1:' labels, wrapping quotes and a trailing mix note naming the classes."""
    text = _SPACE.sub(" ", str(raw)).strip()
    note = _mix_note(class_names)
    for _ in range(2):  # numbering inside quotes, or quotes inside numbering
        text = _NUMBERING.sub("", text)
        text = _LABEL_PREFIX.sub("", text)
        if note is not None:
            text = note.sub("", text).strip()
        text = _strip_quotes(text)
    return text.strip()


def _strip_quotes(text: str) -> str:
    """Remove one pair of quotes wrapped around the whole text (not '"Hi" she said "bye"')."""
    while len(text) >= 2 and _PAIRS.get(text[0]) == text[-1] and text[0] not in text[1:-1] \
            and text[-1] not in text[1:-1]:
        text = text[1:-1].strip()
    return text


def _split_lines(raw_texts: Iterable[str]) -> list[str]:
    """An LM sometimes returns one string holding a numbered list: split it into its lines."""
    out = []
    for raw in raw_texts:
        lines = [ln for ln in str(raw).splitlines() if ln.strip()]
        out.extend(lines if len(lines) > 1 else [str(raw)])
    return out


def is_near_copy(text: str, others: Iterable[str], threshold: float = NEAR_COPY) -> bool:
    """True when the normalized text is at least ``threshold`` similar (difflib ratio) to one of ``others``."""
    key = normalize(text)
    for other in others:
        matcher = difflib.SequenceMatcher(None, key, normalize(other))
        if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold \
                and matcher.ratio() >= threshold:
            return True
    return False


def clean_texts(raw_texts: Iterable[str], *, seen: set[str] | None = None, seeds: Iterable[str] = (),
                class_names: Sequence[str] = (), descriptions: Iterable[str] = (),
                max_chars: int = 500) -> CleanResult:
    """Clean each text, then drop what must not be trained on (the reasons are in the module docstring).

    ``seeds`` should be every seed of the dataset, not only the prompt's; ``seen`` holds the normalized texts
    kept before (it is updated), so duplicates across calls are caught.
    """
    seen = set() if seen is None else seen
    checks = _Checks(list(seeds), list(class_names), list(descriptions), max_chars)
    result = CleanResult()
    for raw in _split_lines(raw_texts):
        text = clean_text(raw, class_names)
        reason = checks.reason(text, seen)
        if reason:
            result.dropped.append((str(raw), reason))
            continue
        seen.add(normalize(text))
        result.kept.append(text)
    return result


@dataclass
class _Checks:
    seeds: list[str]
    class_names: list[str]
    descriptions: list[str]
    max_chars: int

    def __post_init__(self) -> None:
        self.seed_keys = {normalize(s) for s in self.seeds}
        self.name_keys = {normalize(n.replace("_", " ")) for n in self.class_names} | \
            {normalize(n) for n in self.class_names}
        self.description_keys = [normalize(d) for d in self.descriptions]

    def reason(self, text: str, seen: set[str]) -> str | None:
        key = normalize(text)
        if not key:
            return "empty"
        if len(text) < MIN_CHARS:
            return "too_short"
        if len(text) > self.max_chars:
            return "too_long"
        if key in self.name_keys:
            return "class_name"
        if key in self.seed_keys or is_near_copy(text, self.seeds):
            return "seed_copy"
        if self._copies_a_description(key):
            return "description_copy"
        if key in seen or is_near_copy(key, seen):
            return "duplicate"
        return None

    def _copies_a_description(self, key: str) -> bool:
        """A near-copy of a description, or a text of four or more words most of which (70% of its characters,
        in one run) is a stretch of a description."""
        if is_near_copy(key, self.description_keys):
            return True
        if len(key.split()) < 4:
            return False
        for desc in self.description_keys:
            match = difflib.SequenceMatcher(None, key, desc, autojunk=False).find_longest_match()
            if match.size >= 0.7 * len(key):
                return True
        return False
