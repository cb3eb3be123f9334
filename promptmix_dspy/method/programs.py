"""Compiled program state on disk: each program's JSON state (DSPy's ``save``: demos and instructions, never
pickle) beside a meta.json that names the labels it was compiled for. Loading refuses other labels."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import dspy

from promptmix_dspy.method.modules import PromptMix
from promptmix_dspy.store.files import read_json

__all__ = ["META", "PROGRAMS", "ProgramsMismatch", "check_labels", "check_rows", "labelled_rows_sha256",
           "load_compiled", "load_state", "programs_identity", "read_meta"]

logger = logging.getLogger(__name__)


PROGRAMS = ("relabeler", "generator")


META = "meta.json"


def read_meta(programs_dir: str | Path) -> dict[str, Any]:
    path = Path(programs_dir) / META
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {programs_dir} is not a folder of compiled programs "
                                f"(make one with `promptmix compile --out {programs_dir}`)")
    return read_json(path)


def check_labels(saved: list[str], labels: list[str], where: Path) -> None:
    if sorted(saved) != sorted(labels):
        raise ValueError(f"the programs in {where} were compiled for labels {saved}, but this dataset has labels "
                         f"{labels}; compile programs for this dataset (promptmix compile --dataset ... --out DIR)")


class ProgramsMismatch(ValueError):
    """Compiled programs were made on other labelled rows than the run may use."""


def labelled_rows_sha256(split: Any) -> str:
    """sha256 of every labelled row a compile saw: the seeds and the dev split, in order."""
    from promptmix_dspy.store.identity import texts_sha256

    return texts_sha256(list(split.seeds) + list(split.dev), ("text", "label"))


def check_rows(meta: dict, split: Any, where: Path) -> None:
    """Refuse programs compiled on other labelled rows than ``split``'s (another seed's seeds, another dev
    split): their demos and choices carry labels this run may not see."""
    expected = labelled_rows_sha256(split)
    if meta.get("rows_sha256") != expected:
        raise ProgramsMismatch(
            f"the programs in {where} were compiled on other labelled rows (seed {meta.get('seed')}, dev "
            f"{meta.get('dev_per_class')} per class, rows {str(meta.get('rows_sha256'))[:12]}) than this run's "
            f"(seed {split.seed}, dev {len(split.dev) // max(1, len(split.labels))} per class, rows {expected[:12]}): "
            f"compile them for this seed (promptmix compile --seed {split.seed} ...)")


def load_state(module: dspy.Module, path: str | Path) -> dspy.Module:
    """Load one saved program's JSON state (demos, instructions) into ``module``."""
    module.load(str(path))
    return module


def load_compiled(program: PromptMix, programs_dir: str | Path, labels: list[str]) -> dict[str, Any]:
    """Load the compiled relabeler and/or generator in ``programs_dir`` into ``program``; returns meta.json.

    Raises ValueError when the programs were compiled for other labels, or the folder holds none.
    """
    folder = Path(programs_dir)
    meta = read_meta(folder)
    check_labels(meta.get("labels", []), list(labels), folder)
    saved = meta.get("programs", {})
    for name, module in (("relabeler", program.relabeler), ("generator", program.generator)):
        if name in saved:
            load_state(module, folder / saved[name].get("file", f"{name}.json"))
            logger.info("using the compiled %s from %s (%s)", name, folder, saved[name].get("optimizer"))
    if not any(name in saved for name in PROGRAMS):
        raise ValueError(f"{folder / META} lists no compiled program (expected {list(PROGRAMS)})")
    return meta


def programs_identity(folder: str | Path | None) -> dict | None:
    """A programs folder by path and content: recompiled programs are other programs."""
    if not folder:
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"path": str(folder), "sha256": digest.hexdigest()[:16]}
