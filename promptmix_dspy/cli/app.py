"""The ``promptmix`` app: one typer command per function of the command modules, registered here."""

from __future__ import annotations

import typer

from promptmix_dspy.cli import augment_commands, compile_command, experiment_commands, llm_commands, student_commands

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="PromptMix with DSPy: few labelled examples + an LLM -> a fast, cheap text classifier.")

COMMANDS = {
    "augment": augment_commands.augment,
    "describe": augment_commands.describe,
    "serve": llm_commands.serve,
    "models": llm_commands.models,
    "build-server": llm_commands.build_server,
    "train": student_commands.train,
    "predict": student_commands.predict,
    "evaluate": student_commands.evaluate,
    "export": student_commands.export,
    "compile": compile_command.compile_programs,
    "run": experiment_commands.run,
    "bench": experiment_commands.bench,
}
for name, command in COMMANDS.items():
    app.command(name)(command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
