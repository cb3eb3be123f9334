"""What compiling buys: the relabeler's dev and test accuracy and the generator's metric, before and after.

For each optimizer given, the relabeler and the generator are compiled on the few-shot split (dev: leave-one-out
over the seeds, or --dev-per-class examples drawn from the rest of train) and scored before and after. Test
accuracy is only reported, on a seeded subsample of the test split (--test-size); nothing is chosen with it.

    python evals/compile_gain.py --dataset trec6 --data-dir ../shared/data --optimizer labeled \\
        --optimizer bootstrap --save programs/trec6 --table evals/results/compile_gain_trec6.md

With no --lm the embedded server runs the default local model (Qwen2.5-Coder-1.5B-Instruct). Prints a markdown table, with the settings beside it.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from pathlib import Path

import dspy

from promptmix_dspy.compile.config import CompileConfig
from promptmix_dspy.compile.metrics import relabel_accuracy
from promptmix_dspy.compile.optimize import compile_programs, evaluate_program, save_compiled
from promptmix_dspy.compile.optimizers import parse_settings
from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.llm.settings import LMSettings, open_lm
from promptmix_dspy.method.modules import Relabeler
from promptmix_dspy.store.files import now_iso


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="trec6")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--optimizer", action="append", help="repeatable; default: labeled")
    p.add_argument("--opt", action="append", default=[], help="OPTIMIZER:KEY=VALUE, e.g. bootstrap:max_rounds=2")
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dev-per-class", type=int, default=0)
    p.add_argument("--generator-calls", type=int, default=2)
    p.add_argument("--generator-dev-calls", type=int, default=1)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--test-size", type=int, default=60, help="seeded subsample of test (0: all of it)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lm", default=None)
    p.add_argument("--api-base", default=None)
    p.add_argument("--api-key-env", default=None)
    p.add_argument("--save", type=Path, default=None, help="save the programs of --save-from here")
    p.add_argument("--save-from", default=None, help="which optimizer's programs --save writes (default: last)")
    p.add_argument("--table", type=Path, default=None, help="also write the table to this markdown file")
    return p.parse_args()


def _settings_for(name: str, pairs: list[str]) -> dict:
    return parse_settings([p.split(":", 1)[1] for p in pairs if p.split(":", 1)[0] == name])


def _row(program: str, metric: str, split: str, n: int, before: float, after: float) -> str:
    return f"| {program} | {metric} | {split} | {n} | {before:.3f} | {after:.3f} | {after - before:+.3f} |"


def _optimizer_rows(name: str, results: dict, test_rows: tuple[int, float, float] | None) -> list[str]:
    rows = []
    if "relabeler" in results:
        r = results["relabeler"]
        rows.append(_row(f"relabeler ({name})", "label accuracy", f"dev, {r.dev_mode}", r.dev_size,
                         r.dev_before, r.dev_after))
    if test_rows:
        n, before, after = test_rows
        rows.append(_row(f"relabeler ({name})", "label accuracy", "test subsample (report only)", n, before, after))
    if "generator" in results:
        g = results["generator"]
        rows.append(_row(f"generator ({name})", "GeneratorMetric", "dev mix calls", g.dev_size, g.dev_before,
                         g.dev_after))
    return rows


def _test_subsample(ds, size: int, seed: int) -> list[dspy.Example]:
    test = list(ds.test)
    if size and size < len(test):
        test = random.Random(seed).sample(test, size)
    return [dspy.Example(text=e.text, label=e.label).with_inputs("text") for e in test]


def _config(name: str, args: argparse.Namespace) -> CompileConfig:
    return CompileConfig(optimizer=name, settings=_settings_for(name, args.opt), shots=args.shots, seed=args.seed,
                         dev_per_class=args.dev_per_class, top_k=args.top_k, generator_calls=args.generator_calls,
                         generator_dev_calls=args.generator_dev_calls, num_threads=args.threads)


def _test_accuracy(results: dict, test_set: list, handle, threads: int) -> tuple[int, float, float] | None:
    """The uncompiled and the compiled relabeler on the test subsample (reported, never used to choose)."""
    if not test_set:
        return None
    compiled = results["relabeler"].program
    plain = Relabeler(list(compiled.cards.values()), compiled.selector)
    return (len(test_set), evaluate_program(plain, test_set, relabel_accuracy, handle, threads),
            evaluate_program(compiled, test_set, relabel_accuracy, handle, threads))


def main() -> int:
    args = _args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    optimizers, ds = args.optimizer or ["labeled"], load_dataset(args.dataset, data_dir=args.data_dir)
    test_set, start, lines, saved = _test_subsample(ds, args.test_size, args.seed), time.monotonic(), [], {}
    with open_lm(LMSettings(model=args.lm, api_base=args.api_base, api_key_env=args.api_key_env)) as handle:
        for name in optimizers:
            saved[name] = (compile_programs(ds, None, _config(name, args), handle), _config(name, args))
            lines += _optimizer_rows(name, saved[name][0], _test_accuracy(saved[name][0], test_set, handle,
                                                                          args.threads))
        if args.save:
            results, config = saved[args.save_from or optimizers[-1]]
            save_compiled(args.save, results, few_shot_split(ds, config.shots, config.seed, config.dev_per_class),
                          handle, config=config)
        lm_desc = handle.describe()
    table = _render(args, optimizers, lines, lm_desc, time.monotonic() - start)
    print(table)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table + "\n", encoding="utf-8")
    return 0


def _render(args: argparse.Namespace, optimizers: list[str], lines: list[str], lm: dict, seconds: float) -> str:
    model = lm["model"] + (f" (the embedded {lm.get('local_model', 'model')} on llama.cpp, JSON-schema constrained)"
                           if lm["embedded"] else "")
    opts = ", ".join(f"{o} {_settings_for(o, args.opt) or '(defaults)'}" for o in optimizers)
    header = ["| program (optimizer) | metric | split | n | before | after | change |",
              "|---|---|---|---|---|---|---|"]
    settings = [
        f"- dataset: {args.dataset}, {args.shots} shots per class, seed {args.seed}; relabeler dev: "
        + (f"{args.dev_per_class} per class from the rest of train" if args.dev_per_class else
           "leave-one-out over the seeds (a seed never sees itself in a card or demo)"),
        f"- generator: {args.generator_calls} training and {args.generator_dev_calls} dev mix calls per class, "
        f"3 texts each; GeneratorMetric judged by the relabeler compiled by the same optimizer (before and after "
        f"use that one judge, so the generator's 'before' differs between optimizers)",
        f"- test: seeded subsample of {args.test_size or 'all'} test questions, reported only",
        f"- optimizers: {opts}",
        f"- LM: {model}, adapter {lm['adapter']}, max_tokens {lm['max_tokens']}; top-k {args.top_k} candidates",
        f"- machine: {os.cpu_count()} CPU cores (shared), {args.threads} threads; wall time {seconds / 60:.1f} min; "
        f"dspy {dspy.__version__}; {now_iso()}",
        f"- command: python {' '.join(sys.argv)}",
    ]
    return "\n".join(["## Compile gain", "", *header, *lines, "", *settings])


if __name__ == "__main__":
    sys.exit(main())
