"""Crash safety and reproducibility.

`promptmix augment` runs in a subprocess against a ScriptedServer owned by the test, is killed with SIGKILL
after N requests were served, and is run again with the same command: it must ask for no finished unit again
(the server counts requests) and end with the augmented.jsonl of an uninterrupted run, byte for byte.
The responder is deterministic (the answer depends only on the prompt), standing in for cached answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dspy
import pytest

from promptmix_dspy.llm.settings import LMSettings
from promptmix_dspy.pipeline.augment import augment
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.testing import Fault, RuleResponder, ScriptedServer, stable_generate


def healthy() -> RuleResponder:
    return RuleResponder(generate=stable_generate)


def command(out: Path, server: ScriptedServer, data_dir: Path, seed: int = 0) -> list[str]:
    return [sys.executable, "-m", "promptmix_dspy.cli", "augment", "--dataset", "trec6", "--data-dir", str(data_dir),
            "--per-class", "4", "--texts-per-call", "2", "--top-k", "6", "--seed", str(seed), "--threads", "4",
            "--lm", "hosted_vllm/scripted", "--api-base", server.base_url, "--no-cache", "--out", str(out)]


def run_cli(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


class KillAfter:
    """Answers like ``healthy()``; request number ``n`` kills the client process with SIGKILL instead."""

    def __init__(self, n: int):
        self.n, self.inner, self.count = n, healthy(), 0
        self.pid: int | None = None
        self.started, self._lock = threading.Event(), threading.Lock()

    def __call__(self, messages: list[dict], params: dict) -> str | Fault:
        self.started.wait(30)
        with self._lock:
            self.count += 1
            kill = self.count == self.n
        if kill:
            os.kill(self.pid, signal.SIGKILL)
            return Fault(drop=True)
        return self.inner(messages, params)


def kill_mid_run(cmd: list[str], env: dict, responder: KillAfter) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    responder.pid = proc.pid
    responder.started.set()
    return proc.wait(timeout=600)


def finished_units(out: Path) -> int:
    """Units journaled as answered: the work a resumed run must not pay for again."""
    total = 0
    for name in ("generated.jsonl", "relabeled.jsonl"):
        path = out / name
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        total += sum(1 for line in lines if _complete(line) and not json.loads(line)["error"])
    return total


def _complete(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    return {**os.environ, "DSPY_CACHEDIR": str(tmp_path_factory.mktemp("dspy-cache"))}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir, env) -> tuple[bytes, int]:
    """augmented.jsonl of a run that was never killed, and how many requests it made."""
    out = tmp_path_factory.mktemp("uninterrupted")
    with ScriptedServer(healthy()) as server:
        proc = run_cli(command(out, server, data_dir), env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return (out / "augmented.jsonl").read_bytes(), len(server.requests)


@pytest.mark.parametrize("kill_at", [5, 19], ids=["during-generation", "during-relabeling"])
def test_kill_9_then_the_same_command_resumes_without_repeating_work(tmp_path, data_dir, env, uninterrupted,
                                                                     kill_at):
    reference, total_requests = uninterrupted
    out, killer = tmp_path / "run", KillAfter(kill_at)
    with ScriptedServer(killer) as server:
        assert kill_mid_run(command(out, server, data_dir), env, killer) == -signal.SIGKILL
        done = finished_units(out)
        assert 0 < done < total_requests and not (out / "augmented.jsonl").exists()
        with open(out / "generated.jsonl", "a", encoding="utf-8") as fh:
            fh.write('{"call_id": "ABBR#0", "texts": ["torn wr')  # as if killed in the middle of a write
        served = len(server.requests)
        proc = run_cli(command(out, server, data_dir), env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        resumed_requests = len(server.requests) - served
    assert resumed_requests == total_requests - done  # every finished unit came from the journal
    assert (out / "augmented.jsonl").read_bytes() == reference
    rows = [json.loads(line) for line in reference.decode().splitlines()]
    assert len({r["text"] for r in rows}) == len(rows) == 24  # no duplicate, no loss
    assert journal_keys_unique(out)


def journal_keys_unique(out: Path) -> bool:
    """Every journal line parses (the torn one was cut off) and no unit was answered twice."""
    for name in ("generated.jsonl", "relabeled.jsonl"):
        rows = [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]
        keys = [row.get("call_id") or row["key"] for row in rows]
        if len(keys) != len(set(keys)):
            return False
    return True


# ----------------------------------------------------------------------------------------------------------
# reproducibility and the response cache


def run_cached(server: ScriptedServer, out: Path, data_dir: Path, seed: int = 0) -> bytes:
    cfg = AugmentConfig(per_class=4, texts_per_call=2, top_k=6, seed=seed)
    augment("trec6", out, cfg, LMSettings(model="hosted_vllm/scripted", api_base=server.base_url, cache=True),
            data_dir=data_dir)
    return (out / "augmented.jsonl").read_bytes()


@pytest.fixture
def disk_cache(tmp_path):
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(tmp_path / "cache"))
    yield
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)


def test_same_seed_and_cache_give_identical_bytes_and_no_new_request(tmp_path, data_dir, disk_cache):
    with ScriptedServer(RuleResponder()) as server:  # answers vary from call to call, like a sampling LLM
        first = run_cached(server, tmp_path / "a", data_dir)
        asked = len(server.requests)
        second = run_cached(server, tmp_path / "b", data_dir)
        assert len(server.requests) == asked  # every answer came from the cache
        other_seed = run_cached(server, tmp_path / "c", data_dir, seed=1)
    assert first == second and first != other_seed
    assert len(first.splitlines()) == len(other_seed.splitlines()) == 24


def test_answers_from_the_cache_cost_nothing_but_record_what_they_cost_when_made(tmp_path, data_dir, disk_cache):
    from promptmix_dspy.store.files import journal_usage, read_journal

    journals = ("generated.jsonl", "relabeled.jsonl")
    with ScriptedServer(RuleResponder()) as server:
        run_cached(server, tmp_path / "a", data_dir)
        run_cached(server, tmp_path / "b", data_dir)  # every answer from the cache
    made, served = (journal_usage([tmp_path / run / j for j in journals]) for run in "ab")
    assert made["prompt_tokens"] > 0 and made["cache_served_tokens"] == 0
    assert served["prompt_tokens"] == served["completion_tokens"] == 0
    assert served["cache_served_tokens"] == made["prompt_tokens"] + made["completion_tokens"]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["llm"]["cache_served_tokens"] == served["cache_served_tokens"]
    made_rows = {row["key"]: row["usage"] for row in read_journal(tmp_path / "a" / "relabeled.jsonl")}
    for row in read_journal(tmp_path / "b" / "relabeled.jsonl"):  # call by call, too
        first = made_rows[row["key"]]
        assert row["usage"]["cache_served_tokens"] == first["prompt_tokens"] + first["completion_tokens"] > 0


def test_two_endpoints_never_share_cached_answers(tmp_path, data_dir, disk_cache):
    def other_model(messages: list[dict], params: dict) -> str:
        answer = healthy()(messages, params)
        if not answer.startswith("{"):  # a one-label answer: the class, bare
            return answer
        answer = json.loads(answer)
        if "texts" in answer:
            answer["texts"] = [t.replace("text mixing", "question mixing") for t in answer["texts"]]
        return json.dumps(answer)

    with ScriptedServer(healthy()) as one, ScriptedServer(other_model) as two:
        first = run_cached(one, tmp_path / "one", data_dir)
        second = run_cached(two, tmp_path / "two", data_dir)
        assert len(two.requests) == len(one.requests)  # the same model name at another endpoint: asked again
    assert b"question mixing" in second and b"question mixing" not in first


def test_the_cache_key_covers_the_sample_index(tmp_path, disk_cache):
    from promptmix_dspy.llm.settings import build_handle

    with ScriptedServer(RuleResponder()) as server:
        settings = LMSettings(model="hosted_vllm/scripted", api_base=server.base_url, cache=True)
        lm = build_handle(settings, settings.model, server.base_url, embedded=False).lm
        first = lm("hello", temperature=1.0)
        assert lm("hello", temperature=1.0) == first and len(server.requests) == 1
        lm("hello", temperature=1.0, rollout_id=1)  # another sample of the same prompt
        lm.copy(rollout_id=2)("hello", temperature=1.0)  # an optimizer's way of asking for one
        assert len(server.requests) == 3


def test_a_restarted_embedded_server_reuses_cached_answers_another_model_does_not(tmp_path, disk_cache):
    """The embedded server gets a new port each start; its cache identity is the model file, not the port."""
    from promptmix_dspy.llm.settings import build_handle

    settings = LMSettings(model="hosted_vllm/smollm2", cache=True)
    with ScriptedServer(RuleResponder()) as one, ScriptedServer(RuleResponder()) as two:
        def ask(server: ScriptedServer, identity: str) -> str:
            lm = build_handle(settings, settings.model, server.base_url, embedded=True, identity=identity).lm
            return lm("hello", temperature=0.0)

        first = ask(one, "llama.cpp:model.gguf:100:smollm2:4096")
        assert ask(two, "llama.cpp:model.gguf:100:smollm2:4096") == first and not two.requests
        ask(two, "llama.cpp:other.gguf:200:smollm2:4096")
        assert len(two.requests) == 1


class InterruptAfter:
    """Answers like ``healthy()``, each answer taking ``delay`` seconds; when request ``n`` arrives it sends the
    client SIGINT (Ctrl-C), so the requests then in flight are still answered after the interrupt."""

    def __init__(self, n: int, delay: float = 1.0):
        self.n, self.delay, self.inner, self.count = n, delay, healthy(), 0
        self.pid: int | None = None
        self.started, self._lock = threading.Event(), threading.Lock()

    def __call__(self, messages: list[dict], params: dict) -> str | Fault:
        self.started.wait(30)
        with self._lock:
            self.count += 1
            interrupt = self.count == self.n
        if interrupt:
            os.kill(self.pid, signal.SIGINT)
        return Fault(delay=self.delay, content=self.inner(messages, params))


def test_ctrl_c_journals_the_calls_in_flight_and_the_resumed_run_repeats_none(tmp_path, data_dir, env,
                                                                              uninterrupted):
    reference, total_requests = uninterrupted
    responder = InterruptAfter(n=8)
    with ScriptedServer(responder) as server:
        cmd = command(tmp_path / "run", server, data_dir)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        responder.pid = proc.pid
        responder.started.set()
        _, stderr = proc.communicate(timeout=600)
        answered = len(server.requests)
        assert proc.returncode == 130, stderr[-2000:]
        assert "saving the 4 call(s) in flight" in stderr and "run the same command to resume" in stderr
        assert finished_units(tmp_path / "run") == answered  # the 4 answered after Ctrl-C were kept
        server.responder = healthy()
        resumed = run_cli(cmd, env)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert len(server.requests) == total_requests  # the resumed run asked only for what was never answered
    assert (tmp_path / "run" / "augmented.jsonl").read_bytes() == reference


def test_journals_from_before_cache_served_costing_say_not_recorded_rather_than_zero(tmp_path):
    from promptmix_dspy.store.files import journal_usage

    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text(json.dumps({"key": "a", "usage": {"attempts": 1, "prompt_tokens": 5}}) + "\n")
    new.write_text(json.dumps({"key": "b", "usage": {"attempts": 1, "cache_served_tokens": 7}}) + "\n")
    assert journal_usage([old])["cache_served_tokens"] is None
    assert journal_usage([old, new])["cache_served_tokens"] == 7
    assert journal_usage([tmp_path / "missing.jsonl"])["cache_served_tokens"] == 0
