"""What augmentation cost per final example, read from finished run folders (no LLM call is made).

For each generation folder (an `augment` run, or a grid's runs/<grid>/generations/<dataset>/seed<k>/<generation>)
it prints: final examples, generation and relabel calls, prompt / completion tokens per final example (face
value, as the endpoint reported them), kept texts per generation call, the share of written texts dropped as seed
copies, and LLM call-seconds per final example (each call's own duration, summed: divide by the requests in
flight for wall time; resumed runs count each call once). With --server-logs it also reads
llama.cpp's own accounting ("N prefix-match hit, remaining M prompt tokens to eval") from the embedded server's
worker logs: the share of prompt tokens the server really evaluated, the rest coming from its prefix cache.

    python benchmarks/token_cost.py --run default=runs/bench_qwen/generations/trec6/seed0/mix \\
        --run nomix=runs/bench_qwen/generations/trec6/seed0/nomix --server-logs '/tmp/promptmix-llama-*'
"""

from __future__ import annotations

import argparse
import glob
import json
import re
from pathlib import Path

PREFIX = re.compile(r"(\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")


def _journal(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line
    return rows


def run_cost(folder: Path) -> dict:
    generated, relabeled = _journal(folder / "generated.jsonl"), _journal(folder / "relabeled.jsonl")
    final = sum(1 for line in (folder / "augmented.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    usage = [r.get("usage") or {} for r in generated + relabeled]
    prompt, completion = sum(u.get("prompt_tokens", 0) for u in usage), sum(u.get("completion_tokens", 0) for u in usage)
    raw = sum(len(r.get("raw_texts") or []) for r in generated)
    copies = sum(1 for r in generated for _, why in (r.get("dropped") or []) if why == "seed_copy")
    return {"final": final, "generate_calls": len(generated), "relabel_calls": len(relabeled),
            "prompt_per_example": prompt / final, "completion_per_example": completion / final,
            "tokens_per_example": (prompt + completion) / final,
            "kept_per_call": sum(len(r.get("texts") or []) for r in generated) / max(1, len(generated)),
            "seed_copy_share": copies / max(1, raw),
            "call_seconds_per_example": sum(u.get("seconds", 0) for u in usage) / final}


def prefix_reuse(pattern: str) -> tuple[int, int, int]:
    requests = hit = evaluated = 0
    for path in glob.glob(f"{pattern}/worker-*.log"):
        for m in PREFIX.finditer(Path(path).read_text(encoding="utf-8", errors="ignore")):
            requests, hit, evaluated = requests + 1, hit + int(m.group(1)), evaluated + int(m.group(2))
    return requests, hit, evaluated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="LABEL=FOLDER, repeatable")
    parser.add_argument("--server-logs", default=None, help="glob of embedded-server log folders")
    args = parser.parse_args()
    lines = ["| run | final | gen calls | relabel calls | prompt tok/ex | completion tok/ex | total tok/ex | "
             "kept/gen call | seed copies | LLM call-s/ex |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for spec in args.run:
        label, _, folder = spec.partition("=")
        c = run_cost(Path(folder))
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
    print("\n".join(lines))


if __name__ == "__main__":
    main()
