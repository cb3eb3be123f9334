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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
