"""Content identity: the sha256 of what a step read, so two results can be paired only when their inputs are
byte-identical. Values are hashed as canonical JSON (sorted keys, no spaces, UTF-8), so the same content gives
the same digest whichever file format or order of dict keys it came in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["content_sha256", "file_sha256", "texts_sha256"]


def content_sha256(value: Any) -> str:
    """sha256 (hex) of ``value`` as canonical JSON."""
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def texts_sha256(rows: Any, fields: tuple[str, ...] = ("text",)) -> str:
    """sha256 of the ``fields`` of each row (dicts or objects with those attributes), in order."""
    def pick(row: Any) -> list:
        return [row.get(f) if isinstance(row, dict) else getattr(row, f, None) for f in fields]
    return content_sha256([pick(r) for r in rows])


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
