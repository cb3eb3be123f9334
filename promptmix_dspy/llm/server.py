"""The embedded offline LLM: a local GGUF model (llm/models.py; Qwen2.5-Coder-1.5B-Instruct by default) served by
llama.cpp's own OpenAI-compatible server, ``llama-server`` (built by llm/build.py).

One process holds one copy of the model and serves ``parallel`` slots with continuous batching: requests in
flight are decoded together, and each slot keeps its prompt's KV cache, so a request goes to the slot whose cached
prompt it shares most (``--slot-prompt-similarity``) and a prompt state pushed out of a slot waits in the RAM
prompt cache. litellm reaches it as ``hosted_vllm/<alias>`` at ``http://127.0.0.1:<port>/v1``, the same path a
hosted model takes; the alias and the response-cache identity follow the model file. ``/metrics`` is on:
benchmarks/server_profile.py reads the server's own token and time counters from it.

No orphans: the server runs in its own process group, gets SIGKILL from the kernel when the parent dies
(PR_SET_PDEATHSIG on Linux, even on ``kill -9``), and is stopped by the context manager, by atexit, and on
Ctrl-C or errors. Call ``start()`` from a long-lived thread (normally the main one): Linux delivers the death
signal when the *thread* that forked the child exits.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Callable

__all__ = ["LocalServer", "ServerError", "free_port"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 5.0


class ServerError(RuntimeError):
    """The server exited, or did not answer in time during start-up."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: own process group, and die with the parent (Linux) even if it is SIGKILLed."""
    # Look prctl up here, in the parent: after fork() only the calling thread exists, so keep the child's work small.
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
    return setup


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class _Child:
    name: str
    url: str  # the base URL it answers on, without /v1
    log: Path
    proc: subprocess.Popen


class LocalServer:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1, as a context manager.

    ``local_model`` is a known model name or a .gguf path (default: PROMPTMIX_LOCAL_MODEL, else
    qwen2.5-coder-1.5b); ``parallel`` (slots), ``threads`` and ``n_ctx`` (per slot) default to what suits that
    model.

    >>> with LocalServer("smollm2-135m", parallel=2) as server:  # doctest: +SKIP
    ...     lm = dspy.LM(server.model, api_base=server.base_url, api_key="local", max_tokens=256)
    """

    def __init__(self, local_model: str | None = None, parallel: int | None = None, n_ctx: int | None = None,
                 host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 180.0,
                 threads: int | None = None, log_dir: str | None = None) -> None:
        from promptmix_dspy.llm.models import resolve_local_model

        for name, value in (("parallel", parallel), ("threads", threads), ("n_ctx", n_ctx)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.resolved = resolve_local_model(local_model)
        self.alias, self.host = self.resolved.alias, host
        self.parallel = parallel or self.resolved.slots
        self.n_ctx = n_ctx or self.resolved.n_ctx
        self._port_arg, self.port = port, port
        self.startup_timeout = startup_timeout
        self.threads = threads or _cpu_count()
        self._log_dir_arg = log_dir
        self.log_dir: Path | None = None
        self._child: _Child | None = None

    @property
    def base_url(self) -> str:
        """What litellm / the openai client takes as api_base."""
        if self.port is None:
            raise RuntimeError("the server has no port yet: call start() first")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The server without /v1: /metrics, /slots, /tokenize live there."""
        return self.base_url.removesuffix("/v1")

    @property
    def model(self) -> str:
        """The litellm model string."""
        return f"hosted_vllm/{self.alias}"

    @property
    def model_file(self) -> Path:
        return self.resolved.path

    @property
    def identity(self) -> str:
        """What answers, independent of the port it got this time: the model file (name and size), the alias and
        the context length. Part of the response-cache key, so a new server for the same model reuses answers."""
        return f"llama.cpp:{self.model_file.name}:{self.model_file.stat().st_size}:{self.alias}:{self.n_ctx}"

    @property
    def pids(self) -> list[int]:
        """Process ids of the running server (one process: one copy of the model for every slot)."""
        return [self._child.proc.pid] if self._child else []

    @property
    def log_files(self) -> list[Path]:
        """The server's log; kept after stop() only when log_dir was given."""
        return [self._child.log] if self._child else []

    def alive(self) -> bool:
        return self._child is not None and self._child.proc.poll() is None

    def start(self) -> "LocalServer":
        if self._child:
            raise RuntimeError("the server is already running")
        binary, model_path = self._check_requirements()
        self.port = self._port_arg or free_port(self.host)  # a fresh free port on every start
        self.log_dir = Path(self._log_dir_arg or tempfile.mkdtemp(prefix="promptmix-llama-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._spawn(binary, model_path)
            self._wait_until_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("local LLM %s ready at %s (%d slot(s), %d thread(s), logs in %s)",
                    self.alias, self.base_url, self.parallel, self.threads, self.log_dir)
        return self

    def stop(self) -> None:
        """Terminate the server (its whole process group), kill it after a grace period, reap it."""
        child, self._child = self._child, None
        atexit.unregister(self.stop)
        if child is not None:
            _signal_group(child.proc, signal.SIGTERM)
            _reap(child.proc, time.monotonic() + _STOP_GRACE_S)
            logger.info("local LLM at port %s stopped", self.port)
        if self.log_dir is not None and self._log_dir_arg is None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self._child else "stopped"
        return f"LocalServer(alias={self.alias!r}, parallel={self.parallel}, {state})"

    def _check_requirements(self) -> tuple[str, str]:
        from promptmix_dspy.llm.build import LLAMA_SERVER_ENV, find_llama_server

        binary = find_llama_server()
        if binary is None:
            raise FileNotFoundError(f"llama.cpp's server (llama-server) is not built: run `promptmix build-server` "
                                    f"(about 4 minutes; .ci/setup.sh does it), or point ${LLAMA_SERVER_ENV} at one")
        if not self.model_file.is_file():
            raise FileNotFoundError(f"model file not found: {self.model_file}")
        return str(binary), str(self.model_file)

    def command(self, binary: str, model_path: str) -> list[str]:
        """The server's command line: one model copy, ``parallel`` slots of ``n_ctx`` tokens each."""
        return [binary, "--model", model_path, "--alias", self.alias, "--host", self.host, "--port", str(self.port),
                "--ctx-size", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel),
                "--threads", str(self.threads), "--threads-batch", str(self.threads), "--metrics",
                "--no-webui", "--log-disable" if os.environ.get("PROMPTMIX_LLAMA_QUIET") else "--log-prefix"]

    def _spawn(self, binary: str, model_path: str) -> None:
        log = self.log_dir / "server.log"
        cmd = self.command(binary, model_path)
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_child_setup(os.getpid()), close_fds=True)
        self._child = _Child("server", f"http://{self.host}:{self.port}", log, proc)
        logger.debug("started llama-server (pid %d): %s", proc.pid, " ".join(cmd))

    def _wait_until_ready(self, deadline: float) -> None:
        while not _answers(self._child.url + "/health"):
            self.check()
            if time.monotonic() > deadline:
                raise ServerError(f"llama-server did not answer within {self.startup_timeout:.0f} s; "
                                  f"log tail:\n{_log_tail(self._child.log)}")
            time.sleep(0.1)

    def check(self) -> None:
        """Raise ServerError, with the log tail, if the server has exited."""
        child = self._child
        if child is not None and (code := child.proc.poll()) is not None:
            raise ServerError(f"llama-server (pid {child.proc.pid}) exited with code {code}; "
                              f"log tail ({child.log}):\n{_log_tail(child.log)}")


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)


def _reap(proc: subprocess.Popen, deadline: float) -> None:
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM; killing it", proc.pid)
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
