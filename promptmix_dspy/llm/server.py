"""The embedded offline LLM: a local GGUF model (llm/models.py; Qwen2.5-Coder-1.5B-Instruct by default) served by
llama.cpp's OpenAI-compatible server.

litellm reaches it as ``hosted_vllm/<alias>`` at ``http://127.0.0.1:<port>/v1``, the same path a hosted model
takes; the alias and the response-cache identity follow the model file. llama-cpp-python's server answers one request at a time, so ``parallel=N`` starts N worker processes
(each with cores // N threads) behind a small dispatching proxy (promptmix_dspy.llm.proxy) on the public port.

No orphans: children run in their own process group, get SIGKILL from the kernel when the parent dies
(PR_SET_PDEATHSIG on Linux, even on ``kill -9``), and are stopped by the context manager, by atexit, and on
Ctrl-C or errors. Call ``start()`` from a long-lived thread (normally the main one): Linux delivers the death
signal when the *thread* that forked the child exits.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
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
    """A worker or the proxy exited, or the server did not answer in time during start-up."""


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
    qwen2.5-coder-1.5b); ``parallel``, ``threads`` and ``n_ctx`` default to what suits that model.

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
        self.parallel = parallel or self.resolved.workers
        self.n_ctx = n_ctx or self.resolved.n_ctx
        self._port_arg, self.port = port, port
        self.startup_timeout = startup_timeout
        # the registry's threads suit its worker layout; another layout splits the cores among its workers
        layout = self.resolved.threads if self.parallel == self.resolved.workers else None
        self.threads = threads or layout or max(1, _cpu_count() // self.parallel)
        self._log_dir_arg = log_dir
        self.log_dir: Path | None = None
        self._children: list[_Child] = []

    @property
    def base_url(self) -> str:
        """What litellm / the openai client takes as api_base."""
        if self.port is None:
            raise RuntimeError("the server has no port yet: call start() first")
        return f"http://{self.host}:{self.port}/v1"

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
        """Process ids of the running workers (and the proxy, last, when parallel > 1)."""
        return [child.proc.pid for child in self._children]

    @property
    def log_files(self) -> list[Path]:
        """One log per child; kept after stop() only when log_dir was given."""
        return [child.log for child in self._children]

    def alive(self) -> bool:
        """True while every child process is still running."""
        return bool(self._children) and all(child.proc.poll() is None for child in self._children)

    def start(self) -> "LocalServer":
        if self._children:
            raise RuntimeError("the server is already running")
        model_path = self._check_requirements()
        self.port = self._port_arg or free_port(self.host)  # a fresh free port on every start
        self.log_dir = Path(self._log_dir_arg or tempfile.mkdtemp(prefix="promptmix-llama-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._spawn_all(model_path)
            self._wait_until_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("local LLM %s ready at %s (%d worker(s), %d thread(s) each, logs in %s)",
                    self.alias, self.base_url, self.parallel, self.threads, self.log_dir)
        return self

    def stop(self) -> None:
        """Terminate every child (whole process group), kill what is left after a grace period, reap."""
        children, self._children = self._children, []
        atexit.unregister(self.stop)
        for child in children:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for child in children:
            _reap(child.proc, deadline)
        if children:
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
        state = f"running at {self.base_url}" if self._children else "stopped"
        return f"LocalServer(alias={self.alias!r}, parallel={self.parallel}, {state})"

    def _check_requirements(self) -> str:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModuleNotFoundError("llama-cpp-python is not installed: `pip install 'llama-cpp-python[server]'` "
                                      "(or `pip install 'promptmix-dspy[local]'`); the build takes a few minutes")
        if not self.model_file.is_file():
            raise FileNotFoundError(f"model file not found: {self.model_file}")
        return str(self.model_file)

    def _spawn_all(self, model_path: str) -> None:
        if self.parallel == 1:
            self._spawn_worker(0, model_path, self.port)
            return
        for index in range(self.parallel):
            self._spawn_worker(index, model_path, free_port(self.host))
        self._spawn_proxy([child.url for child in self._children])

    def _spawn_proxy(self, worker_urls: list[str]) -> None:
        upstreams = [arg for url in worker_urls for arg in ("--upstream", url)]
        cmd = [sys.executable, "-m", "promptmix_dspy.llm.proxy", "--host", self.host, "--port", str(self.port)]
        # Make the proxy importable even when promptmix_dspy runs from a source tree that is not installed.
        package_root = str(Path(__file__).resolve().parent.parent)
        python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path}
        self._spawn("proxy", cmd + upstreams, self.port, env)

    def _spawn_worker(self, index: int, model_path: str, port: int) -> None:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--model_alias", self.alias,
               "--host", self.host, "--port", str(port), "--n_ctx", str(self.n_ctx),
               "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)]
        # OpenMP threads that spin while waiting collapse llama.cpp's speed (20x measured) when other work shares
        # the cores, as it does here (DSPy, the trainer, other workers); passive waiting costs little when idle.
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        self._spawn(f"worker-{index}", cmd, port, env)

    def _spawn(self, name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> None:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_child_setup(os.getpid()), close_fds=True, env=env)
        self._children.append(_Child(name, f"http://{self.host}:{port}", log, proc))
        logger.debug("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))

    def _wait_until_ready(self, deadline: float) -> None:
        pending = list(self._children)  # workers first, then the proxy that needs them
        while pending:
            self.check()
            if _answers(pending[0].url + "/v1/models"):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise ServerError(f"{pending[0].name} did not answer within {self.startup_timeout:.0f} s; "
                                       f"log tail:\n{_log_tail(pending[0].log)}")
            time.sleep(0.1)

    def check(self) -> None:
        """Raise ServerError, with the log tail, if a worker or the proxy has exited."""
        for child in self._children:
            code = child.proc.poll()
            if code is not None:
                raise ServerError(f"{child.name} (pid {child.proc.pid}) exited with code {code}; "
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
