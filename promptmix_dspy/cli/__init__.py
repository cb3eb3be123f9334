"""The ``promptmix`` command line: the only place that turns flags into config. May import every layer;
heavy imports live inside commands."""

from promptmix_dspy.cli.app import app, main

__all__ = ["app", "main"]
