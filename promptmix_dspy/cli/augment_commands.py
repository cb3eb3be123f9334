"""``promptmix augment`` and ``promptmix describe``: the LLM side of the method on one dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from promptmix_dspy.cli.common import guarded, setup_logging
from promptmix_dspy.cli.options import (
    BudgetOptions,
    DataOptions,
    GenerationOptions,
    LMOptions,
    Seed,
    Shots,
    Verbose,
    budget_fields,
    with_groups,
)

__all__ = ["augment", "describe"]

RunOut = Annotated[Path, typer.Option("--out", "-o", help="Run folder (re-running resumes it).")]


@with_groups
def augment(data: DataOptions, out: RunOut, generation: GenerationOptions, lm: LMOptions, budget: BudgetOptions,
            shots: Shots = None, seed: Seed = None,
            rounds: Annotated[int, typer.Option("--rounds", min=1, max=2, help="2: then a second round aimed at "
                                                "where a student trained on round 1 disagrees with the LLM "
                                                "(OUT/round2, OUT/augmented_2rounds.jsonl).")] = 1,
            round1_student: Annotated[Optional[str], typer.Option("--round1-student", help="The student trained "
                                                                  "on round 1 to find its confusions (--rounds 2; "
                                                                  "default all-MiniLM-L6-v2).")] = None,
            verbose: Verbose = False) -> None:
    """Generate borderline examples, relabel them, and write OUT/augmented.jsonl with provenance."""
    setup_logging(verbose)
    from promptmix_dspy.llm.settings import open_lm
    from promptmix_dspy.pipeline.augment import run_augment
    from promptmix_dspy.pipeline.config import AugmentConfig

    if generation.probe_per_class is not None and rounds != 2:
        raise typer.BadParameter("applies only to the second round: add --rounds 2", param_hint="--probe-per-class")
    with guarded(out):
        config = AugmentConfig(**generation.config_fields(), **budget_fields(budget),
                               **given_values(shots=shots, seed=seed))
        settings, ds = lm.settings(), data.load()
        with open_lm(settings) as handle:
            result = run_augment(ds, out, config, handle, programs=generation.programs)
            if rounds == 2:
                from promptmix_dspy.experiments.feedback import second_round_for_run

                both, second = second_round_for_run(ds, out, config, handle, generation.programs,
                                                    round1_student)
    print_summary(result.summary, out)
    if rounds == 2:
        pairs = ", ".join(f"{p['true']} -> {p['predicted']} ({p['rate']:.0%})" for p in second.pairs) or "none"
        typer.echo(f"round 2: the round-1 student disagreed with the LLM most on {pairs}; "
                   f"{len(second.rows)} more rows -> {both}")


def given_values(**values: object) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def print_summary(summary: dict, out: Path) -> None:
    llm = summary["llm"]
    cost = "unknown (not in litellm's price table)" if llm["cost_usd"] is None else f"${llm['cost_usd']:.4f}"
    share = summary["relabeled_share"]
    typer.echo(f"kept {summary['kept']} examples ({summary['kept_per_class']})")
    typer.echo(f"dropped: {summary['dropped'] or 'none'}")
    typer.echo(f"relabeled: {'n/a' if share is None else f'{share:.1%}'}")
    labelling = summary.get("labelling") or {}
    if labelling.get("probabilities") == "available":
        shares = labelling.get("shares", {})
        typer.echo(f"class probabilities for {labelling['with_probabilities']} of {labelling['texts']} texts, "
                   f"calibration {labelling['calibration']}; class shares raw {shares.get('raw')} -> calibrated "
                   f"{shares.get('calibrated')}")
    elif labelling.get("probabilities"):
        typer.echo(f"class probabilities: {labelling['probabilities']} (the rows carry the LLM's answers as hard "
                   f"labels)")
    contamination = summary.get("contamination") or {}
    if contamination.get("checked"):
        typer.echo(f"test texts among the generated ones: {contamination['exact']} exact, {contamination['near']} "
                   f"near; {contamination['removed']} removed (contamination.jsonl)")
    session = summary.get("this_session") or {}
    served = llm.get("cache_served_tokens") or 0
    typer.echo(f"LLM calls: {llm['llm_calls']} ({llm['failed_units']} failed), tokens: {llm['prompt_tokens']} "
               f"prompt + {llm['completion_tokens']} completion, cost: {cost}"
               + (f" ({served} more tokens' worth of answers came from the response cache)" if served else ""))
    if session.get("llm_calls", 0) < llm["llm_calls"]:  # a resumed run: the rest came from the journals
        typer.echo(f"this session: {session.get('llm_calls', 0)} LLM calls ({session.get('retries', 0)} retries); "
                   f"the others were read from the run folder")
    typer.echo(f"wrote {out / 'augmented.jsonl'} and {out / 'config.json'}")


DescribeOut = Annotated[Path, typer.Option("--out", "-o", help="Run folder; descriptions.json is written there.")]


@with_groups
def describe(data: DataOptions, out: DescribeOut, lm: LMOptions, budget: BudgetOptions, shots: Shots = None,
             seed: Seed = None, verbose: Verbose = False) -> None:
    """Have the LM write a one-sentence description of every class from its name and seed examples."""
    setup_logging(verbose)
    from promptmix_dspy.data.fewshot import few_shot_split
    from promptmix_dspy.llm.runner import Budget
    from promptmix_dspy.llm.settings import open_lm
    from promptmix_dspy.pipeline.config import AugmentConfig
    from promptmix_dspy.pipeline.describe import describe_classes, describe_task

    with guarded(out):
        config = AugmentConfig(describe="always", **budget_fields(budget), **given_values(shots=shots, seed=seed))
        split = few_shot_split(data.load(), config.shots, config.seed)
        out.mkdir(parents=True, exist_ok=True)
        with open_lm(lm.settings()) as handle:
            budget = Budget(config.max_errors, config.max_cost)
            cards = describe_classes(split, config, handle, out, budget, describe_task(split, config, handle, out,
                                                                                        budget))
    for card in cards:
        typer.echo(f"{card.name}: {card.description}")
    typer.echo(f"wrote {out / 'descriptions.json'}")
