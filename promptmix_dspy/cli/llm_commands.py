"""``promptmix serve`` and ``promptmix models``: the embedded local LLM."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from promptmix_dspy.cli.common import fail, setup_logging
from promptmix_dspy.cli.options import LocalModel, Verbose, with_groups

__all__ = ["build_server", "models", "serve"]


@with_groups
def serve(local_model: LocalModel = None,
          parallel: Annotated[Optional[int], typer.Option("--parallel", min=1, help="Requests decoded at once "
                              "(server slots over one model copy; default: what suits the model).")] = None,
          port: Annotated[Optional[int], typer.Option("--port", help="Public port on 127.0.0.1 (default: a free "
                                                      "one).")] = None,
          n_ctx: Annotated[Optional[int], typer.Option("--n-ctx", min=256, help="Context length of each slot "
                                                       "(default: the model's).")] = None,
          threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads of the server "
                                                         "(default: every core).")] = None,
          verbose: Verbose = False) -> None:
    """Serve the embedded LLM (llama.cpp, OpenAI-compatible) in the foreground until Ctrl-C."""
    import signal
    import time

    from promptmix_dspy.llm.server import LocalServer

    setup_logging(verbose)
    for sig in (signal.SIGINT, signal.SIGTERM):  # `kill` cleans up like Ctrl-C, also when run in background
        signal.signal(sig, signal.default_int_handler)
    try:
        with LocalServer(local_model, parallel=parallel, port=port, n_ctx=n_ctx, threads=threads) as server:
            typer.echo(f"serving {server.alias} ({server.model_file}) at {server.base_url}, {server.parallel} at a "
                       f"time\nuse: --lm {server.model} --api-base {server.base_url} --adapter llama-cpp\n"
                       f"Ctrl-C to stop")
            while True:
                server.check()
                time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopped")
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        fail(exc)


def build_server(force: Annotated[bool, typer.Option("--force", help="Build again even when one is built.")] = False,
                 verbose: Verbose = False) -> None:
    """Build llama.cpp's server (llama-server) for the embedded LLM from PyPI's llama-cpp-python sdist (~4 min)."""
    from promptmix_dspy.llm.build import BuildError, build_llama_server

    setup_logging(verbose)
    try:
        typer.echo(build_llama_server(force=force))
    except (BuildError, OSError) as exc:
        fail(exc)


def models(verbose: Verbose = False) -> None:
    """The local models the embedded server knows: installed or not, size, licence (--local-model NAME)."""
    from promptmix_dspy.llm.models import LOCAL_MODELS, model_status

    setup_logging(verbose)
    for model in LOCAL_MODELS.values():
        status = model_status(model)
        default = " (default)" if status["default"] else ""
        typer.echo(f"{status['name']}{default}: {status['summary']}\n  {status['size'] / 1e9:.2f} GB, licence "
                   f"{status['licence']}, served as {status['alias']}\n  {status['state']}")
    typer.echo("Any other .gguf file works too: --local-model path/to/model.gguf")
