"""The command-line app: the only place that turns flags into config. Heavy imports live inside commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="PromptMix with DSPy: few labelled examples + an LLM -> a fast, cheap text classifier.")

# Shared option aliases, so every command spells them the same way.
DataDirOpt = typer.Option(None, "--data-dir", envvar="PROMPTMIX_DATA_DIR",
                          help="Folder with <dataset>/{train,test}.jsonl, labels.json, descriptions.json.")
SeedOpt = typer.Option(0, "--seed", help="One seed for every random choice.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Debug logging.")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def serve(parallel: int = typer.Option(1, "--parallel", min=1, help="Requests answered at once (worker processes)."),
          port: Optional[int] = typer.Option(None, "--port", help="Public port on 127.0.0.1 (default: a free one)."),
          model_path: Optional[Path] = typer.Option(None, "--model-path", help="A GGUF file (default: SmolLM2-135M)."),
          n_ctx: int = typer.Option(4096, "--n-ctx", min=256, help="Context length of each worker."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads per worker (cores // N)."),
          verbose: bool = VerboseOpt) -> None:
    """Serve the embedded LLM (llama.cpp, OpenAI-compatible) in the foreground until Ctrl-C."""
    import signal
    import time

    from promptmix_dspy.server import LocalServer

    _setup_logging(verbose)
    server = LocalServer(model_path=str(model_path) if model_path else None, parallel=parallel, port=port,
                         n_ctx=n_ctx, threads=threads)
    for sig in (signal.SIGINT, signal.SIGTERM):  # `kill` cleans up like Ctrl-C, even when started in background
        signal.signal(sig, signal.default_int_handler)
    try:
        with server:
            typer.echo(f"serving {server.alias} at {server.base_url} ({parallel} at a time)\n"
                       f"use: --lm {server.model} --api-base {server.base_url}\nCtrl-C to stop")
            while True:
                server.check()
                time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopped")
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        _fail(exc)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
