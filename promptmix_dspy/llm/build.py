"""Building llama.cpp's own server (``llama-server``), the embedded LLM's engine, from source.

The source is the llama.cpp tree vendored in the llama-cpp-python sdist on PyPI (``vendor/llama.cpp``, MIT),
fetched with pip, so the build needs only PyPI, cmake and a C++ compiler: no GitHub, no network beyond the
package index. The binary goes to ``PROMPTMIX_HOME/bin/llama-server`` (``PROMPTMIX_HOME`` defaults to
``~/.cache/promptmix``) with a record of what it was built from beside it; a second build is a no-op. Built
portable (``GGML_NATIVE=OFF``: AVX2/FMA/F16C on x86-64), so a home shared by machines of one architecture
works on all of them. About 4 minutes on 2 cores.

    python -m promptmix_dspy.llm.build          # or: promptmix build-server
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from promptmix_dspy.llm.models import promptmix_home

__all__ = ["LLAMA_SERVER_ENV", "SOURCE", "BuildError", "build_llama_server", "find_llama_server"]

logger = logging.getLogger(__name__)
LLAMA_SERVER_ENV = "PROMPTMIX_LLAMA_SERVER"
SOURCE = "llama-cpp-python==0.3.36"  # its sdist vendors llama.cpp 0c1e570 (tools/server)
CMAKE_FLAGS = ("-DGGML_NATIVE=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF",
               "-DCMAKE_BUILD_TYPE=Release")


class BuildError(RuntimeError):
    """The server could not be built; the message says which step failed and where its log is."""


def installed_path() -> Path:
    return promptmix_home() / "bin" / "llama-server"


def find_llama_server() -> Path | None:
    """The llama-server binary: $PROMPTMIX_LLAMA_SERVER, else the one built here, else one on PATH."""
    if os.environ.get(LLAMA_SERVER_ENV):
        path = Path(os.environ[LLAMA_SERVER_ENV]).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"${LLAMA_SERVER_ENV} is {path}, which is not an executable file")
        return path
    if installed_path().is_file():
        return installed_path()
    found = shutil.which("llama-server")
    return Path(found) if found else None


def build_llama_server(source: str = SOURCE, jobs: int | None = None, force: bool = False) -> Path:
    """Build llama-server from ``source`` (a pip requirement whose sdist vendors llama.cpp) into PROMPTMIX_HOME."""
    dest, record = installed_path(), installed_path().with_suffix(".json")
    if dest.is_file() and not force and record.is_file() and json.loads(record.read_text()).get("source") == source:
        logger.info("llama-server is already built from %s: %s", source, dest)
        return dest
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"building llama-server needs {tool!r} on PATH (e.g. apt-get install cmake g++)")
    with tempfile.TemporaryDirectory(prefix="promptmix-llama-build-") as tmp:
        work = Path(tmp)
        tree = _fetch_source(source, work)
        binary = _compile(tree, work / "build", jobs or os.cpu_count() or 2, work / "build.log")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
        shutil.copy2(binary, partial)
        os.replace(partial, dest)
    record.write_text(json.dumps({"source": source, "cmake": list(CMAKE_FLAGS)}) + "\n")
    logger.info("built %s from %s", dest, source)
    return dest


def _fetch_source(source: str, work: Path) -> Path:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet", source,
          "-d", str(work)], work / "download.log", "pip download")
    archives = sorted(work.glob("*.tar.gz"))
    if not archives:
        raise BuildError(f"pip download {source} gave no sdist archive (see {work / 'download.log'})")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(work / "src", filter="data")
    trees = list((work / "src").glob("*/vendor/llama.cpp/tools/server"))
    if not trees:
        raise BuildError(f"{archives[0].name} has no vendor/llama.cpp/tools/server: not a llama.cpp source")
    return trees[0].parent.parent


def _compile(tree: Path, build: Path, jobs: int, log: Path) -> Path:
    _run(["cmake", "-S", str(tree), "-B", str(build), *CMAKE_FLAGS], log, "cmake configure")
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)], log, "cmake build")
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        raise BuildError(f"the build finished without {binary} (log: {log})")
    return binary


def _run(cmd: list[str], log: Path, step: str) -> None:
    with open(log, "ab") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"{step} failed (exit {code}): {' '.join(cmd[:4])} ...\n{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build llama.cpp's server for the embedded LLM.")
    parser.add_argument("--source", default=SOURCE, help=f"pip requirement of the sdist (default {SOURCE})")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="build again even when one is there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build_llama_server(args.source, args.jobs, args.force))


if __name__ == "__main__":
    main()
