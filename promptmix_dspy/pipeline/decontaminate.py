"""The contamination step: generated texts that are test texts (method/contamination.py) never reach training.

Run between generation and relabeling, so a removed text costs no relabel call and a1 (no relabeling) loses it
too. What was found goes to contamination.jsonl (one line per removed text with its test match) and to the run's
summary; ``decontaminate=False`` checks and records without removing.
"""

from __future__ import annotations

from pathlib import Path

from promptmix_dspy.data.types import Dataset
from promptmix_dspy.method.contamination import RULE, TestOverlap
from promptmix_dspy.store.files import atomic_write_jsonl

__all__ = ["drop_test_texts"]


def drop_test_texts(rows: list[dict], dataset: Dataset, out: Path | None,
                    remove: bool = True) -> tuple[list[dict], list[tuple[str, str]], dict]:
    """(rows kept, drops with their reason, the record for summary.json)."""
    if not dataset.test:
        return rows, [], {"checked": False, "why": "the dataset has no test split"}
    matches = {m.text: m for m in TestOverlap([e.text for e in dataset.test]).matches([r["text"] for r in rows])}
    if out is not None:
        atomic_write_jsonl(Path(out) / "contamination.jsonl", [m.to_dict() for m in matches.values()])
    record = {"checked": True, "rule": RULE, "test_texts": len(dataset.test), "texts": len(rows),
              "exact": sum(m.kind == "exact" for m in matches.values()),
              "near": sum(m.kind == "near" for m in matches.values()),
              "removed": len(matches) if remove else 0}
    if not remove:
        return rows, [], record
    kept = [r for r in rows if r["text"] not in matches]
    drops = [(r["text"], f"test_{matches[r['text']].kind}") for r in rows if r["text"] in matches]
    return kept, drops, record
