"""Secrets never reach a file: ``redact`` replaces the values of credential-like environment variables
(``*_API_KEY``, ``*_TOKEN``, ...) and of any value given to ``register_secret`` with ``***``."""

from __future__ import annotations

import logging
import os
import re

__all__ = ["MASK", "redact", "register_secret"]

logger = logging.getLogger(__name__)


_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.I)


_registered: set[str] = set()


MASK = "***"


def register_secret(value: str | None) -> None:
    """Never write ``value`` (an API key read from a variable of any name) to a file."""
    if value and len(value) >= 4:
        _registered.add(value)


def _secrets() -> set[str]:
    found = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8}
    return found | _registered


def redact(text: str, where: str = "") -> str:
    """``text`` with every known secret value replaced by ``***`` (longest first, so no fragment survives)."""
    hits = [s for s in sorted(_secrets(), key=len, reverse=True) if s in text]
    for secret in hits:
        text = text.replace(secret, MASK)
    if hits:
        logger.warning("a secret value was about to be written%s; replaced it with %s", f" to {where}" * bool(where),
                       MASK)
    return text
