"""Shared test set-up: offline, no disk cache, fresh DSPy settings, the shared data folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before any litellm/dspy/transformers import: never reach the network, never reuse a developer's cache.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="promptmix-dspy-cache-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The embedded server runs the fast SmolLM2 in tests; the tests of the default model name it explicitly.
os.environ.setdefault("PROMPTMIX_LOCAL_MODEL", "smollm2-135m")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("PROMPTMIX_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if not (path / "trec6" / "train.jsonl").exists():
        pytest.fail(f"the benchmark data folder is missing: {path} (set PROMPTMIX_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def _fresh_dspy_settings():
    """Each test starts with no configured LM or adapter and an in-memory-only response cache."""
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    dspy.configure(lm=None, adapter=None, track_usage=False)
    yield
    dspy.configure(lm=None, adapter=None, track_usage=False)
