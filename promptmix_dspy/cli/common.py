"""What every command shares: logging, the error exit, and stopping a long run cleanly."""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path
from typing import Iterator, NoReturn

import typer

__all__ = ["fail", "guarded", "setup_logging"]

NOISY = ("LiteLLM", "litellm", "httpx", "httpcore", "urllib3", "filelock")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(exc: BaseException) -> NoReturn:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def guarded(out: Path | None = None, what: str = "everything finished so far") -> Iterator[None]:
    """Run a command's work: bad input is exit 2 with the message; a spent budget (exit 3) or Ctrl-C / `kill`
    (exit 130) says what was saved and that the same command resumes."""
    from promptmix_dspy.llm.runner import RunStopped

    where = f" in {out}" if out else ""
    try:
        with _sigterm_as_interrupt():
            yield
    except KeyboardInterrupt:
        typer.secho(f"interrupted: {what} is saved{where}; run the same command to resume.",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=130)
    except RunStopped as exc:
        typer.secho(f"stopped: {exc}. {what[0].upper() + what[1:]} is saved{where}; run the same command to "
                    f"resume.", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=3)
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        fail(exc)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` stops a long run like Ctrl-C (answers in flight journaled, the embedded server stopped), also when
    started in the background; the previous handlers come back afterwards."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in before:
        signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
