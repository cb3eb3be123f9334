"""Soak: a full augmentation run of ~2,000 LLM calls against a local server that fails 10% of requests.

The faults are drawn at random (seeded) from a mix: 429 with Retry-After, 500, 503, timeouts, dropped
connections, refused connections (a short server outage), truncated and garbled bodies, cut-off JSON, empty
answers and labels outside the candidates. The run uses the real pipeline (promptmix_dspy.pipeline.augment: litellm
over HTTP, DSPy adapters, the runner's retries, the journals) with 8 requests in flight, then checks the run
folder against the answers the runner reported:

  calls      LLM calls (units of work) and the HTTP requests they took
  retries    transport retries + fresh-sample retries
  skipped    calls that still failed after their retries (counted, not fatal)
  crashes    exceptions that escaped the run or a thread (must be 0)
  rows lost  answers reported done but missing from disk, generated texts neither selected nor dropped with a
             reason, and relabeled texts missing from augmented.jsonl (must be 0)
  wrong rows rows on disk whose label differs from the scripted provider's answer (must be 0)

Usage: python benchmarks/soak.py [--calls 2000] [--fault-rate 0.1] [--threads 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Callable

from promptmix_dspy.llm.settings import LMSettings
from promptmix_dspy.pipeline.augment import augment
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.store import files as store
from promptmix_dspy.testing import Fault, RuleResponder, ScriptedServer

CLIENT_TIMEOUT = 1.0
LM = {"num_retries": 4, "timeout": CLIENT_TIMEOUT, "backoff": 0.05, "max_backoff": 0.5, "max_retry_after": 0.25}


def fault_kinds(server_ref: dict) -> dict[str, Callable[[str], Fault]]:
    """Fault name -> the Fault sent instead of (or around) the real answer."""
    def refused(answer: str) -> Fault:
        server_ref["server"].outage(0.1)  # connections refused for 0.1 s; open ones are cut
        return Fault(drop=True)

    return {
        "rate_limited_429": lambda a: Fault(status=429, headers={"Retry-After": "1"}),
        "server_error_500": lambda a: Fault(status=500),
        "unavailable_503": lambda a: Fault(status=503),
        "timeout": lambda a: Fault(delay=CLIENT_TIMEOUT + 0.5, content=a),
        "dropped_connection": lambda a: Fault(drop=True),
        "refused_connection": refused,
        "truncated_body": lambda a: Fault(body='{"id": "chatcmpl-x", "object": "chat.completion", "choi'),
        "garbled_body": lambda a: Fault(body="<html><body>502 Bad Gateway</body></html>"),
        "cut_off_json": lambda a: Fault(content=a[: len(a) // 2]),
        "empty_answer": lambda a: Fault(content=""),
        "label_not_a_candidate": lambda a: Fault(content=json.dumps({"label": "NOT_A_CLASS"})),
    }


class RandomFaults:
    """A responder that answers like RuleResponder but fails ``rate`` of the requests with a random fault."""

    def __init__(self, rate: float, seed: int, server_ref: dict):
        self.inner, self.rate, self.rng = RuleResponder(), rate, random.Random(seed)
        self.kinds, self.injected, self._lock = fault_kinds(server_ref), Counter(), threading.Lock()

    def __call__(self, messages: list[dict], params: dict) -> str | Fault:
        answer = self.inner(messages, params)
        with self._lock:
            kind = self.rng.choice(sorted(self.kinds)) if self.rng.random() < self.rate else None
            self.injected[kind or "none"] += 1
        return self.kinds[kind](answer) if kind else answer


class AppendCounter:
    """Counts the journal rows the pipeline appended, per file, to compare with what is on disk afterwards."""

    def __init__(self):
        self.rows, self._original = Counter(), store.Journal.append

    def __enter__(self) -> "AppendCounter":
        counter = self

        def append(journal: store.Journal, row: dict) -> None:
            counter._original(journal, row)
            counter.rows[journal.path.name] += 1
        store.Journal.append = append
        return self

    def __exit__(self, *exc: object) -> None:
        store.Journal.append = self._original


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def rows_lost(out: Path, appended: Counter, summary: dict) -> dict[str, int]:
    """Answers the pipeline reported but that are not on disk, or that vanished between steps."""
    generated, relabeled = read_jsonl(out / "generated.jsonl"), read_jsonl(out / "relabeled.jsonl")
    augmented = read_jsonl(out / "augmented.jsonl")
    unwritten = sum(appended[name] - len(read_jsonl(out / name)) for name in appended)
    texts = sum(len(row["texts"]) for row in generated if not row["error"])
    reasoned = summary["dropped"].get("duplicate", 0) + summary["dropped"].get("over_quota", 0)
    answered = {row["text"] for row in relabeled if not row["error"]}
    return {"unwritten journal rows": unwritten, "generated texts unaccounted": texts - len(relabeled) - reasoned,
            "relabeled rows missing from augmented.jsonl": len(answered - {row["text"] for row in augmented})}


def wrong_rows(out: Path) -> int:
    """Labels on disk that differ from what the provider answered (a garbled answer taken as valid)."""
    rows = [r for r in read_jsonl(out / "relabeled.jsonl") if not r["error"]]
    return sum(row["label"] != expected_label(row["text"], row["candidates"]) for row in rows)


def expected_label(text: str, candidates: list[str]) -> str:
    """RuleResponder's rule: the first candidate named in the text, else the first candidate."""
    return next((c for c in candidates if c.lower() in text.lower()), candidates[0])


def soak(calls: int, rate: float, threads: int, seed: int, data_dir: Path) -> int:
    crashes: list[str] = []
    threading.excepthook = lambda args: crashes.append(f"thread: {args.exc_type.__name__}: {args.exc_value}")
    server_ref: dict = {}
    responder = RandomFaults(rate, seed, server_ref)
    per_class = max(1, round(calls / 8))  # 6 classes: per_class*6/3 generation + per_class*6 relabel calls
    config = AugmentConfig(per_class=per_class, texts_per_call=3, top_k=6, num_threads=threads, seed=seed)
    out = Path(tempfile.mkdtemp(prefix="promptmix-soak-")) / "run"
    start, summary = time.monotonic(), {}
    with ScriptedServer(responder) as server, AppendCounter() as appended:
        server_ref["server"] = server
        try:
            summary = augment("trec6", out, config, LMSettings(model="hosted_vllm/scripted", api_base=server.base_url,
                                                               **LM), data_dir=data_dir).summary
        except Exception:  # a crash: the run must survive every fault
            crashes.append(traceback.format_exc())
    seconds = time.monotonic() - start
    return report(out, summary, appended.rows, responder.injected, len(server.requests), crashes, seconds)


def report(out: Path, summary: dict, appended: Counter, injected: Counter, requests: int, crashes: list[str],
           seconds: float) -> int:
    llm = summary.get("llm", {})
    units = sum(appended.values())
    lost = rows_lost(out, appended, summary) if summary else {"run did not finish": 1}
    faults = sum(n for kind, n in injected.items() if kind != "none")
    print(f"run folder      {out}")
    print(f"calls           {units} LLM calls, {requests} HTTP requests, {seconds:.1f} s "
          f"({units / seconds:.1f} calls/s)")
    print(f"faults injected {faults} ({faults / max(1, requests):.1%} of requests): "
          + ", ".join(f"{k} {n}" for k, n in sorted(injected.items()) if k != "none"))
    print(f"retries         {llm.get('retries')}")
    print(f"skipped         {llm.get('failed_units')} {llm.get('errors', {})}")
    print(f"crashes         {len(crashes)}")
    print(f"rows lost       {sum(lost.values())} {lost}")
    print(f"wrong rows      {wrong_rows(out)}")
    print(f"kept            {summary.get('kept')} rows in augmented.jsonl, dropped {summary.get('dropped')}")
    for crash in crashes:
        print(crash, file=sys.stderr)
    return 1 if crashes or sum(lost.values()) or wrong_rows(out) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    sys.exit(soak(args.calls, args.fault_rate, args.threads, args.seed, args.data_dir))


if __name__ == "__main__":
    main()
