"""Where each second of the main job goes, from the embedded server's own counters, and the floor they imply.

The README's main job (``promptmix augment --dataset trec6``, seed 0, the embedded default) runs in a fresh
folder with the response cache off, on a server this script starts. Before it, two calibration runs measure the
machine: the server's prompt speed (one 600-token prompt, nothing cached) and its decode speed with as many
requests in flight as it has slots. Then, per stage (describe, generate, relabel):

- wall seconds (describe, where the dataset has no descriptions, counts with generate) and LLM calls;
- prompt tokens at face value (the journals) against those the server really evaluated (its /metrics
  ``prompt_tokens_total``; the rest came from its prompt cache), and completion tokens;
- the floor: evaluated prompt tokens at the prompt speed plus completion tokens at the decode speed; the ratio
  of wall time to it; what is left (HTTP, grammar, Python, the encoder, waiting) is wall minus the server's busy
  time.

    python benchmarks/server_profile.py [--out evals/results/server_profile.md] [--dataset trec6] [--local-model ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

COUNTERS = ("prompt_tokens_total", "prompt_seconds_total", "tokens_predicted_total", "tokens_predicted_seconds_total",
            "prompt_tokens_cached_total", "n_decode_total")


def metrics(root: str) -> dict[str, float]:
    text = httpx.get(root + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line.startswith("llamacpp:"):
            name, value = line.removeprefix("llamacpp:").split()[:2]
            out[name] = float(value)
    return out


def delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in COUNTERS}


def _chat(base: str, model: str, content: str, max_tokens: int, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0,
            "max_tokens": max_tokens, "cache_prompt": False, **extra}
    return httpx.post(base + "/chat/completions", json=body, timeout=600).json()


def calibrate(handle) -> dict:
    """Prompt tokens/s (one prompt, no cache) and completion tokens/s with ``slots`` requests in flight."""
    base, model, root = handle.api_base, handle.model.split("/", 1)[1], handle.server_root
    filler = " ".join(f"word{i}" for i in range(300))
    start = time.monotonic()
    reply = _chat(base, model, f"Say yes. {filler}", 1)
    prompt_speed = reply["usage"]["prompt_tokens"] / (time.monotonic() - start)
    before = metrics(root)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(handle.slots) as pool:
        replies = list(pool.map(lambda i: _chat(base, model, f"Count from {i}.", 96, ignore_eos=True),
                                range(handle.slots)))
    seconds = time.monotonic() - start
    done = delta(before, metrics(root))
    decode_speed = sum(r["usage"]["completion_tokens"] for r in replies) / max(1e-9, seconds - done["prompt_seconds_total"])
    return {"prompt_tokens_per_s": prompt_speed, "decode_tokens_per_s": decode_speed, "slots": handle.slots}


def stage_usage(run: Path) -> dict[str, dict]:
    from promptmix_dspy.store.files import read_journal

    out = {}
    for stage, journal in (("describe", "descriptions.jsonl"), ("generate", "generated.jsonl"),
                           ("relabel", "relabeled.jsonl")):
        rows = read_journal(run / journal)
        usage = [r.get("usage") or {} for r in rows]
        out[stage] = {"calls": sum(u.get("attempts", 0) + u.get("retries", 0) for u in usage),
                      "prompt": sum(u.get("prompt_tokens", 0) for u in usage),
                      "completion": sum(u.get("completion_tokens", 0) for u in usage)}
    return out


def profile(dataset: str, data_dir: str, local_model: str) -> dict:
    import dspy

    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.llm.settings import LMSettings, open_lm
    from promptmix_dspy.pipeline.augment import run_augment
    from promptmix_dspy.pipeline.config import AugmentConfig

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    ds = load_dataset(dataset, data_dir=data_dir)
    with tempfile.TemporaryDirectory() as tmp, open_lm(LMSettings(local_model=local_model, cache=False)) as handle:
        speeds = calibrate(handle)
        stages, server = {}, {}
        run = Path(tmp) / "run"
        started = time.monotonic()
        # the stages one after the other, so the server's counters split by stage (describe, where the dataset
        # gives no descriptions, is counted with generation; the second pass reads the generation back)
        for stage, upto in (("generate", ("describe", "generate")), ("relabel", ("describe", "generate", "relabel"))):
            before, t0 = metrics(handle.server_root), time.monotonic()
            result = run_augment(ds, run, AugmentConfig(), handle, stages=upto)
            server[stage], stages[stage] = delta(before, metrics(handle.server_root)), time.monotonic() - t0
        wall = time.monotonic() - started
        usage = stage_usage(run)
    return {"speeds": speeds, "server": server, "wall": stages, "total_wall": wall, "kept": len(result.rows),
            "summary": result.summary, "usage": usage}


def table(report: dict) -> list[str]:
    speeds, kept = report["speeds"], report["kept"]
    p, d = speeds["prompt_tokens_per_s"], speeds["decode_tokens_per_s"]
    llm = report["summary"]["llm"]
    lines = [f"Machine: prompt {p:.0f} tokens/s (one request, nothing cached), decode {d:.1f} tokens/s with "
             f"{speeds['slots']} requests in flight (the server's slots).", "",
             "| stage | wall s | prompt tokens evaluated | from the server's cache | completion tokens | "
             "floor s | wall / floor | server busy s | other s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    totals = {"wall": 0.0, "evaluated": 0, "cached": 0, "completion": 0, "floor": 0.0, "busy": 0.0}
    for stage, wall in report["wall"].items():
        s = report["server"][stage]
        evaluated, cached, completion = s["prompt_tokens_total"], s["prompt_tokens_cached_total"], \
            s["tokens_predicted_total"]
        floor = evaluated / p + completion / d
        busy = s["prompt_seconds_total"] + s["tokens_predicted_seconds_total"]
        busy = min(busy, wall)  # two slots' timings overlap; the server cannot be busier than the wall clock
        for key, value in (("wall", wall), ("evaluated", evaluated), ("cached", cached), ("completion", completion),
                           ("floor", floor), ("busy", busy)):
            totals[key] += value
        ratio = f"{wall / floor:.2f}" if floor else "–"
        lines.append(f"| {stage} | {wall:.0f} | {evaluated:,.0f} | {cached:,.0f} | {completion:,.0f} | {floor:.0f} | "
                     f"{ratio} | {busy:.0f} | {wall - busy:.0f} |")
    t = totals
    lines.append(f"| **all** | **{t['wall']:.0f}** | {t['evaluated']:,.0f} | {t['cached']:,.0f} | {t['completion']:,.0f} "
                 f"| **{t['floor']:.0f}** | **{t['wall'] / t['floor']:.2f}** | {t['busy']:.0f} | {t['wall'] - t['busy']:.0f} |")
    lines += ["", f"{kept} final examples: **{t['wall'] / kept:.2f} s of wall time per final example** (the floor: "
              f"{t['floor'] / kept:.2f} s); {llm['llm_calls']} LLM calls, {llm['prompt_tokens']:,} prompt tokens at "
              f"face value ({t['evaluated']:,.0f} evaluated by the server: "
              f"{100 * t['evaluated'] / max(1, llm['prompt_tokens']):.0f}%), {llm['completion_tokens']:,} completion.",
              f"Dropped by clean-up: {report['summary']['dropped']}."]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="trec6")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--local-model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    report = profile(args.dataset, args.data_dir, args.local_model)
    text = "\n".join([f"# Where the main job's seconds go ({args.local_model}, {args.dataset} seed 0, 2 CPU cores)", "",
                      f"`python benchmarks/server_profile.py {' '.join(sys.argv[1:])}`", "", *table(report)]) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in report.items() if k != "summary"}, indent=1) + "\n")


if __name__ == "__main__":
    main()
