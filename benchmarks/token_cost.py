"""What augmentation costs per final example: read from finished run folders, and (--live) measured side by side.

From run folders (no LLM call): for each generation folder (an `augment` run, or a grid's
runs/<grid>/generations/<dataset>/seed<k>/<generation>) it prints final examples, generation and relabel calls,
prompt / completion tokens per final example (face value, as the endpoint reported them), kept texts per
generation call, the share of written texts dropped as seed copies, and LLM call-seconds per final example (each
call's own duration, summed: divide by the requests in flight for wall time). With --server-logs it also reads
llama.cpp's own accounting ("N prefix-match hit, remaining M prompt tokens to eval") from the embedded server's
worker logs: the share of prompt tokens the server really evaluated, the rest coming from its prefix cache.

    python benchmarks/token_cost.py --run default=runs/bench_qwen/generations/trec6/seed0/mix \\
        --run nomix=runs/bench_qwen/generations/trec6/seed0/nomix --server-logs '/tmp/promptmix-llama-*'

--live starts the embedded server once and, per dataset (seed 0, 2 shots), compares on it: the authors' protocol
re-created prompt for prompt (benchmarks/original_protocol.py: a few of seed 0's mix calls, then one relabel call
per text over its 5 nearest classes), our faithful mode (--relabel-batch 1 --reask 0) and our default, with our
relabel stage (the pipeline's own label_texts) at each of --batches. Relabel accuracy is on --texts labelled
*train* texts outside the seeds (never test); generation per final example comes from a finished run of each of
our protocols (the grid's seed-0 run when there, else one made under --work, resumable).

    python benchmarks/token_cost.py --live --datasets trec6,subj --out evals/results/token_cost.md
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from promptmix_dspy.experiments.summary import generation_stats
from promptmix_dspy.store.files import read_journal

PREFIX = re.compile(r"(\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")


def prefix_reuse(pattern: str) -> tuple[int, int, int]:
    requests = hit = evaluated = 0
    for path in glob.glob(f"{pattern}/worker-*.log"):
        for m in PREFIX.finditer(Path(path).read_text(encoding="utf-8", errors="ignore")):
            requests, hit, evaluated = requests + 1, hit + int(m.group(1)), evaluated + int(m.group(2))
    return requests, hit, evaluated



# --- live: the original protocol vs our faithful mode vs our default, on one embedded server -------------------

def _gen_cost(folder: Path) -> dict:
    """Generation tokens and call-seconds per final example of a finished run folder, and kept texts per call."""
    stats = generation_stats(folder)
    return {"final": stats["final"], "tokens": stats["generate_tokens_per_example"],
            "seconds": stats["generate_seconds_per_example"], "kept_per_call": stats["kept_per_call"]}


def _chat(client, model: str, prompt: str, temperature: float) -> tuple[str, int, int, float]:
    started = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                           temperature=temperature, max_tokens=256)
    usage = reply.usage
    return (reply.choices[0].message.content or "", usage.prompt_tokens, usage.completion_tokens,
            time.perf_counter() - started)


def _original(client, model: str, ctx: dict, args: argparse.Namespace) -> dict:
    """The authors' prompts: a few mix calls of seed 0's plan (kept texts and tokens per kept text), then one
    relabel call per sample text over its 5 nearest classes, in candidate-set order as their code groups them."""
    import original_protocol as op
    from tqdm import tqdm

    from promptmix_dspy.method.mixing import mix_plan

    dataset, seeds, selector = ctx["dataset"], ctx["seeds"], ctx["selector"]
    plan = mix_plan(dataset.labels, 3 * args.gen_calls_per_class, seed=0)
    seed_texts = {t for texts in seeds.values() for t in texts}
    with ThreadPoolExecutor(2) as pool:
        gen = list(tqdm(pool.map(lambda c: _chat(client, model, op.generation_prompt(c, dataset.descriptions, seeds),
                                                 1.0), plan), total=len(plan), desc="original: generate"))
    kept = sum(len(op.parse_generation(g[0], seed_texts)) for g in gen)
    order = sorted(ctx["texts"], key=lambda t: sorted(selector(t)))
    with ThreadPoolExecutor(2) as pool:
        rel = dict(zip(order, tqdm(pool.map(lambda t: _chat(client, model, op.relabel_prompt(
            t, selector(t), dataset.descriptions, seeds), 0.0), order), total=len(order), desc="original: relabel")))
    preds = [op.map_answer(rel[t][0], dataset.labels, ctx["encoder"]) for t in ctx["texts"]]
    return {"gen_tokens": sum(g[1] + g[2] for g in gen) / max(1, kept), "gen_seconds": sum(g[3] for g in gen)
            / max(1, kept), "kept_per_call": kept / len(plan), "preds": preds,
            "prompt": sum(r[1] for r in rel.values()), "completion": sum(r[2] for r in rel.values()),
            "relabel_seconds": sum(r[3] for r in rel.values())}


def _ours(handle, ctx: dict, batch: int, folder: Path) -> dict:
    """Our relabel stage (pipeline.relabel.label_texts, journal and fall-back included) at ``batch`` texts per call."""
    from promptmix_dspy.llm.runner import Budget
    from promptmix_dspy.pipeline.config import AugmentConfig
    from promptmix_dspy.pipeline.relabel import label_texts

    budget, journal = Budget(), folder / f"relabel_batch{batch}.jsonl"
    journal.unlink(missing_ok=True)
    labels = label_texts(ctx["program"].relabeler, ctx["texts"], journal,
                         AugmentConfig(relabel_batch=batch, num_threads=2), handle, budget, f"relabel x{batch}")
    seconds = sum((row.get("usage") or {}).get("seconds", 0) for row in read_journal(journal))
    return {"preds": [labels[t] for t in ctx["texts"]], "prompt": budget.prompt_tokens,
            "completion": budget.completion_tokens, "relabel_seconds": seconds, "calls": budget.calls}


def _context(ds_name: str, args: argparse.Namespace) -> dict:
    from local_llm import _sample

    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split
    from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder
    from promptmix_dspy.method.signatures import ClassCard
    from promptmix_dspy.pipeline.config import AugmentConfig
    from promptmix_dspy.pipeline.program import build_program

    dataset = load_dataset(ds_name, data_dir=args.data_dir)
    split = few_shot_split(dataset, 2, 0)
    seeds = split.seeds_by_label()
    cards = [ClassCard(name=label, description=dataset.descriptions[label], examples=seeds[label])
             for label in dataset.labels]
    encoder = SentenceEncoder()
    sample = _sample(dataset, args.texts, {e.text for e in split.seeds})
    return {"dataset": dataset, "seeds": seeds, "encoder": encoder, "texts": [e.text for e in sample],
            "gold": [e.label for e in sample], "selector": CandidateSelector(seeds, encoder, 5),
            "program": build_program(cards, AugmentConfig(), None, dataset.task)}


def _run_folder(handle, ds_name: str, ctx: dict, name: str, args: argparse.Namespace) -> Path:
    """A finished run folder of our pipeline on seed 0: the grid's when given/found, else made here (resumable)."""
    from promptmix_dspy.pipeline.augment import run_augment
    from promptmix_dspy.pipeline.config import FAITHFUL, AugmentConfig

    grid = Path(args.grid) / "generations" / ds_name / "seed0" / "mix"
    if name == "default" and (grid / "augmented.jsonl").is_file():
        return grid
    folder = Path(args.work) / ds_name / name
    settings = FAITHFUL if name == "faithful" else {}
    run_augment(ctx["dataset"], folder, AugmentConfig(num_threads=2, **settings), handle)
    return folder


def _row(label: str, ctx: dict, gen: dict, rel: dict, n: int) -> dict:
    from local_llm import _macro_f1

    preds, gold = rel["preds"], ctx["gold"]
    relabel_tokens = (rel["prompt"] + rel["completion"]) / n
    return {"protocol": label, "acc": sum(p == g for p, g in zip(preds, gold)) / n,
            "f1": _macro_f1(gold, preds, ctx["dataset"].labels), "none": sum(p is None for p in preds),
            "gen_tokens": gen["tokens"], "relabel_prompt": rel["prompt"] / n,
            "relabel_completion": rel["completion"] / n,
            "total": gen["tokens"] + relabel_tokens, "seconds": gen["seconds"] + rel["relabel_seconds"] / n,
            "kept_per_call": gen["kept_per_call"]}


def live(args: argparse.Namespace) -> list[str]:
    from openai import OpenAI

    from promptmix_dspy.llm.settings import LMSettings, open_lm

    out = ["| dataset | protocol | relabel acc | macro-F1 | no class | gen tok/final | relabel prompt tok/text | "
           "relabel completion tok/text | total tok/final | x original | LLM call-s/final | kept/gen call |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with open_lm(LMSettings(local_model=args.model, cache=False, timeout=600)) as handle:
        client, model = OpenAI(base_url=handle.api_base, api_key="local"), handle.model.split("/", 1)[-1]
        for ds_name in args.datasets.split(","):
            ctx = _context(ds_name, args)
            n = len(ctx["texts"])
            Path(args.work, ds_name).mkdir(parents=True, exist_ok=True)
            orig = _original(client, model, ctx, args)
            rows = [_row("original (authors' prompts, 1 text/call)", ctx,
                         {"tokens": orig["gen_tokens"], "seconds": orig["gen_seconds"],
                          "kept_per_call": orig["kept_per_call"]}, orig, n)]
            faithful = _gen_cost(_run_folder(handle, ds_name, ctx, "faithful", args))
            default = _gen_cost(_run_folder(handle, ds_name, ctx, "default", args))
            for batch in args.batches:
                rel = _ours(handle, ctx, batch, Path(args.work, ds_name))
                if batch == 1:
                    rows.append(_row("ours, faithful (--relabel-batch 1 --reask 0)", ctx, faithful, rel, n))
                rows.append(_row(f"ours, --relabel-batch {batch} --reask 1" + (" (default)" if batch == 1 else ""),
                                 ctx, default, rel, n))
            for r in rows:
                out.append(f"| {ds_name} | {r['protocol']} | {r['acc']:.1%} | {r['f1']:.3f} | {r['none']} | "
                           f"{r['gen_tokens']:.0f} | {r['relabel_prompt']:.0f} | {r['relabel_completion']:.1f} | "
                           f"{r['total']:.0f} | {r['total'] / rows[0]['total']:.2f} | {r['seconds']:.1f} | "
                           f"{r['kept_per_call']:.2f} |")
                print(out[-1], flush=True)
    return out

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="LABEL=FOLDER, repeatable")
    parser.add_argument("--server-logs", default=None, help="glob of embedded-server log folders")
    parser.add_argument("--live", action="store_true",
                        help="measure the original protocol vs ours on the embedded server (see the docstring)")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="--live: the embedded model")
    parser.add_argument("--datasets", default="trec6,subj", help="--live: datasets, comma-separated")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--texts", type=int, default=120, help="--live: labelled train texts per dataset")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="--live: relabel batch sizes")
    parser.add_argument("--gen-calls-per-class", type=int, default=2, help="--live: original-protocol mix calls")
    parser.add_argument("--grid", default="runs/bench_qwen", help="--live: a grid whose seed-0 PromptMix run "
                        "folder is our default's generation (made under --work when absent)")
    parser.add_argument("--work", default="runs/token_cost", help="--live: run folders made here (resumable)")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    if not args.run and not args.live:
        parser.error("give --run LABEL=FOLDER (repeatable) and/or --live")
    lines = _folder_table(args) if args.run else []
    if args.live:
        lines += [""] * bool(lines) + [
            f"Live, {args.model} on the embedded server, seed 0's 2 shots, {args.texts} labelled train texts per dataset "
            "outside the seeds (relabel accuracy); generation per final example from a finished run of each "
            "protocol:", "", *live(args)]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("# What augmentation costs (benchmarks/token_cost.py)\n\n" + "\n".join(lines)
                                  + "\n", encoding="utf-8")


def _folder_table(args: argparse.Namespace) -> list[str]:
    lines = ["| run | final | gen calls | relabel calls | prompt tok/ex | completion tok/ex | total tok/ex | "
             "kept/gen call | seed copies | LLM call-s/ex |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for spec in args.run:
        label, _, folder = spec.partition("=")
        c = generation_stats(Path(folder))
        lines.append(f"| {label} | {c['final']} | {c['generate_calls']} | {c['relabel_calls']} | "
                     f"{c['prompt_per_example']:.0f} | {c['completion_per_example']:.0f} | "
                     f"{c['tokens_per_example']:.0f} | {c['kept_per_call']:.2f} | {c['seed_copy_share']:.0%} | "
                     f"{c['call_seconds_per_example']:.1f} |")
    if args.server_logs:
        requests, hit, evaluated = prefix_reuse(args.server_logs)
        if requests:
            lines += ["", f"llama.cpp prefix reuse over {requests} requests ({args.server_logs}): "
                      f"{evaluated:,} of {hit + evaluated:,} prompt tokens evaluated "
                      f"({evaluated / (hit + evaluated):.1%}); the rest came from the prefix cache"]
    return lines

if __name__ == "__main__":
    main()
