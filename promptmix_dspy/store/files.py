"""Run-folder I/O: append-only journals that survive kill -9, atomic final files, and provenance.

A journal is a JSONL file written one flushed line per finished unit of work. Reading it back skips a torn
last line (the process died mid-write) and cuts it off, so appending resumes cleanly. Final artifacts are
written to a temporary file and renamed into place, so a reader never sees half a file.

Nothing written here may hold a secret: every line and file passes through ``redact``, which replaces the
values of credential-like environment variables (``*_API_KEY``, ``*_TOKEN``, ...) and of any value given to
``register_secret`` (the variable named by --api-key-env) with ``***``. A provider that echoes the key in an
error message cannot leak it into a journal.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import tempfile
import threading
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from promptmix_dspy.store.redaction import redact

__all__ = ["Journal", "atomic_write_json", "atomic_write_jsonl", "atomic_write_text", "journal_usage", "now_iso",
           "read_journal", "read_json", "versions"]

logger = logging.getLogger(__name__)


class Journal:
    """Append-only JSONL log of finished work, keyed by one field of each row."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self._lock = threading.Lock()
        self.rows: dict[str, dict] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        good_bytes = 0
        with open(self.path, "rb") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    logger.warning("%s: dropping a torn line at byte %d (interrupted write)", self.path, good_bytes)
                    break
                if not raw.endswith(b"\n"):
                    break  # a complete object without its newline is still a torn write: redo that unit
                self.rows[row[self.key]] = row
                good_bytes += len(raw)
        if good_bytes != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_bytes)

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def append(self, row: dict) -> None:
        line = redact(json.dumps(row, ensure_ascii=False, sort_keys=True), str(self.path)) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
            self.rows[row[self.key]] = row


def journal_usage(paths: Iterable[Path]) -> dict:
    """LLM calls, tokens and cost over every line of the journals, earlier interrupted sessions included.

    ``cache_served_tokens``: what the answers DSPy's response cache served (at no cost) had cost when first
    made; None for journals written before that was recorded.

    ``failed_units`` and ``errors`` (failures by kind) count the units still failed: a unit that failed in
    one session and succeeded when the run was resumed is not counted.
    """
    total = {"llm_calls": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_prompt_tokens": 0,
             "cache_served_tokens": 0, "cost_usd": 0.0}
    final: dict[tuple[str, str], str | None] = {}
    recorded = rows = 0
    for path in paths:
        for row in _rows(Path(path)):
            _add_row_usage(total, row)
            rows += 1
            recorded += "cache_served_tokens" in (row.get("usage") or {})
            final[(str(path), json.dumps(_row_key(row), sort_keys=True))] = row.get("error")
    if rows and not recorded:  # journals written before answers served from the cache were costed
        total["cache_served_tokens"] = None
    errors = [str(e).split(":", 1)[0] for e in final.values() if e]
    return {**total, "failed_units": len(errors), "errors": dict(sorted(Counter(errors).items()))}


def read_journal(path: Path) -> list[dict]:
    """The rows of a JSONL journal ([] when missing), up to a torn last line left by a killed run."""
    return list(_rows(Path(path)))


def _rows(path: Path) -> Iterable[dict]:
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                yield json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return


def _row_key(row: dict) -> Any:
    return next((row[k] for k in ("call_id", "key", "label") if k in row), row)


def _add_row_usage(total: dict, row: dict) -> None:
    usage = row.get("usage") or {}
    total["llm_calls"] += usage.get("attempts", 0) + usage.get("retries", 0)
    total["retries"] += max(0, usage.get("attempts", 0) - 1) + usage.get("retries", 0)
    total["prompt_tokens"] += usage.get("prompt_tokens", 0)
    total["completion_tokens"] += usage.get("completion_tokens", 0)
    total["cached_prompt_tokens"] += usage.get("cached_prompt_tokens", 0)
    total["cache_served_tokens"] += usage.get("cache_served_tokens", 0)
    if total["cost_usd"] is not None:
        cost = usage.get("cost")
        total["cost_usd"] = None if cost is None and usage.get("prompt_tokens") else total["cost_usd"] + (cost or 0.0)


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """The mode open() would give a new file (0666 less the umask); read once, on the first write."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(redact(text, str(path)))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp makes it 0600; a result file should read like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def versions() -> dict[str, str]:
    """Versions of what produced an artifact."""
    out = {"python": platform.python_version()}
    for dist in ("promptmix-dspy", "dspy", "litellm", "openai", "transformers", "torch", "datasets",
                 "llama_cpp_python"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
