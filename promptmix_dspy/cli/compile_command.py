"""``promptmix compile``: optimize the relabeler and/or the generator against a dev split."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer

from promptmix_dspy.cli.common import guarded, setup_logging
from promptmix_dspy.cli.options import (
    BudgetOptions,
    DataOptions,
    Encoder,
    LMOptions,
    Seed,
    Shots,
    TopK,
    Verbose,
    budget_fields,
    given,
    with_groups,
)

__all__ = ["compile_programs"]


@dataclass
class CompileOptions:
    """What to compile, with which optimizer, scored how."""

    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the compiled programs (JSON) and meta.json.")]
    program: Annotated[Optional[str], typer.Option("--program", help="relabeler | generator | all (default).")] = None
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="labeled | bootstrap (default) | "
                         "random-search | mipro | gepa; several, comma-separated, are each tried and the best on "
                         "dev is kept.")] = None
    opt: Annotated[list[str], typer.Option("--opt", help="Optimizer setting KEY=VALUE (JSON value), repeatable: "
                                           "--opt max_bootstrapped_demos=2 --opt auto=medium.")] = field(
        default_factory=list)
    dev_per_class: Annotated[Optional[int], typer.Option("--dev-per-class", help="Dev examples per class drawn "
                             "from the rest of train; 0 (default) scores the relabeler leave-one-out over the "
                             "seeds.")] = None
    generator_calls: Annotated[Optional[int], typer.Option("--generator-calls", help="Training mix calls per class "
                                                           "(default 2).")] = None
    generator_dev_calls: Annotated[Optional[int], typer.Option("--generator-dev-calls", help="Dev mix calls per "
                                                               "class (default 1).")] = None
    keep_worse: Annotated[bool, typer.Option("--keep-worse", help="Save a compiled program even when it scores "
                          "lower on dev than the uncompiled one (by default the uncompiled is saved).")] = False
    reflection_lm: Annotated[Optional[str], typer.Option("--reflection-lm", help="litellm model string of the LM "
                             "that rewrites instructions (gepa only); `same`: the LM being compiled.")] = None
    reflection_api_base: Annotated[Optional[str], typer.Option("--reflection-api-base", help="Endpoint URL for "
                                   "--reflection-lm.")] = None

    def config_fields(self) -> dict:
        from promptmix_dspy.compile.optimizers import parse_settings

        skip = ("out", "opt", "reflection_lm", "reflection_api_base")
        return {**{k: v for k, v in given(self).items() if k not in skip}, "settings": parse_settings(self.opt)}


@with_groups
def compile_programs(data: DataOptions, options: CompileOptions, lm: LMOptions, budget: BudgetOptions,
                     top_k: TopK = None, encoder: Encoder = None, shots: Shots = None, seed: Seed = None,
                     verbose: Verbose = False) -> None:
    """Optimize the relabeler and/or the generator against a dev split and save them for `augment --programs`."""
    setup_logging(verbose)
    from promptmix_dspy.compile.config import CompileConfig
    from promptmix_dspy.compile.optimize import check_reflection_lm
    from promptmix_dspy.compile.optimize import compile_programs as run_compile

    with guarded(options.out, "every finished program"):
        extra = {k: v for k, v in dict(top_k=top_k, encoder=encoder, shots=shots, seed=seed).items() if v is not None}
        spend = budget_fields(budget)
        if spend.pop("max_errors", None) is not None:
            raise ValueError("compile takes no --max-errors: scoring stops by itself once half the dev calls fail")
        config = CompileConfig(**options.config_fields(), **spend, **extra)
        check_reflection_lm(config, options.reflection_lm)
        settings, ds = lm.settings(), data.load()
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(_open(settings))
            reflection = handle.lm if options.reflection_lm == "same" else _reflection_lm(stack, options, lm)
            results = run_compile(ds, options.out, config, handle, reflection)
    for name, result in results.items():
        tried = ", ".join(f"{k} {v:.3f}" for k, v in result.tried.items())
        typer.echo(f"{name}: dev {result.metric} ({result.dev_mode}, n={result.dev_size}) uncompiled "
                   f"{result.dev_before:.3f}; {tried}; best {result.optimizer}: {result.dev_before:.3f} -> "
                   f"{result.dev_after:.3f} in {result.seconds:.0f}s; saved the {result.kept} program")
    typer.echo(f"wrote {options.out} (use: promptmix augment --programs {options.out} ...)")


def _open(settings):
    from promptmix_dspy.llm.settings import open_lm

    return open_lm(settings)


def _reflection_lm(stack: contextlib.ExitStack, options: CompileOptions, lm: LMOptions):
    if not options.reflection_lm:
        return None
    from promptmix_dspy.llm.settings import LMSettings

    settings = LMSettings(model=options.reflection_lm, api_base=options.reflection_api_base,
                          api_key_env=lm.api_key_env, max_tokens=max(lm.max_tokens or 0, 4096), cache=not lm.no_cache)
    return stack.enter_context(_open(settings)).lm
