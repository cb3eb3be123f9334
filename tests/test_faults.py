"""LLM faults injected by a real local HTTP server: each is retried within limits, then counted and skipped.

The run is TREC6 with 2 kept texts per class from one generation call per class (6 generation calls, 12
relabel calls, one round), against ScriptedServer with a deterministic responder, so every figure below is
exact. Backoffs and timeouts are shrunk through LMSettings so a test takes seconds.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from promptmix_dspy.llm.runner import RetryPolicy, RunStopped, retry_after
from promptmix_dspy.llm.settings import LMSettings, build_handle
from promptmix_dspy.pipeline.augment import augment
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.testing import Fault, RuleResponder, ScriptedServer, parse_fields, stable_generate

GEN_CALLS, RELABEL_CALLS = 6, 12
FAST = {"num_retries": 2, "timeout": 1.0, "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.2}


def healthy() -> RuleResponder:
    return RuleResponder(generate=stable_generate)


def step(messages: list[dict]) -> str:
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    relabel = '"classes_for_texts"' in system or "of one candidate only." in system
    return "relabel" if relabel else "generate" if '{"texts"' in system else "other"


def about(cls: str, kind: str) -> Callable[[list[dict]], bool]:
    """Requests of one step that concern one class: its generation call, or the relabeling of its texts."""
    def match(messages: list[dict]) -> bool:
        fields = parse_fields(messages[-1]["content"])
        if kind == "generate":
            return step(messages) == kind and fields.get("majority_class") == cls
        return step(messages) == kind and f"a {cls} text" in fields.get("text", fields.get("texts", ""))
    return match


def kind_is_generate(messages: list[dict]) -> bool:
    return step(messages) == "generate"


class Flaky:
    """Gives ``fault(answer)`` to the first ``times`` requests of each distinct prompt that ``match`` selects."""

    def __init__(self, fault: Callable[[str], Fault], match: Callable[[list[dict]], bool] = lambda m: True,
                 times: int = 10**6):
        self.fault, self.match, self.times = fault, match, times
        self.inner, self.seen, self.injected = healthy(), Counter(), 0
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict], params: dict) -> str | Fault:
        answer = self.inner(messages, params)
        key = json.dumps(messages, sort_keys=True)
        with self._lock:
            self.seen[key] += 1
            hit = self.match(messages) and self.seen[key] <= self.times
            self.injected += hit
        return self.fault(answer) if hit else answer


def run(server: ScriptedServer, out: Path, data_dir: Path, lm: dict | None = None, **config):
    cfg = AugmentConfig(per_class=2, texts_per_call=2, top_k=6, max_rounds=1, **config)
    settings = LMSettings(**{"model": "hosted_vllm/scripted", "api_base": server.base_url, **FAST, **(lm or {})})
    return augment("trec6", out, cfg, settings, data_dir=data_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> list[dict]:
    """The rows of an uninterrupted, fault-free run."""
    with ScriptedServer(healthy()) as server:
        result = run(server, tmp_path_factory.mktemp("ref"), data_dir)
        assert len(server.requests) == GEN_CALLS + RELABEL_CALLS
    assert len(result.rows) == 12 and result.summary["llm"]["failed_units"] == 0
    return result.rows


def without(rows: list[dict], cls: str) -> list[dict]:
    return [r for r in rows if r["generated_for"] != cls]


def test_timeouts_are_retried_and_the_timeout_applies(tmp_path, data_dir, reference):
    # every first request answers after 3 s; the client gives up at 1 s and asks again
    flaky = Flaky(lambda answer: Fault(delay=3.0, content=answer), times=1)
    with ScriptedServer(flaky) as server:
        result = run(server, tmp_path, data_dir)
        assert len(server.requests) == 2 * (GEN_CALLS + RELABEL_CALLS)
    assert result.rows == reference
    assert result.summary["llm"]["retries"] == GEN_CALLS + RELABEL_CALLS
    assert result.summary["llm"]["failed_units"] == 0


def test_a_call_that_always_times_out_is_counted_and_skipped(tmp_path, data_dir, reference):
    flaky = Flaky(lambda answer: Fault(delay=3.0, content=answer), match=about("ABBR", "relabel"))
    with ScriptedServer(flaky) as server:
        result = run(server, tmp_path, data_dir, lm={"timeout": 0.5})
    assert flaky.injected == 2 * 3  # two ABBR texts, each tried 1 + num_retries times
    assert result.rows == without(reference, "ABBR")
    assert result.summary["llm"]["errors"] == {"LMTimeoutError": 2}
    assert result.summary["dropped"]["relabel_failed"] == 2


def test_429_honours_retry_after_up_to_the_cap(tmp_path, data_dir, reference):
    # Retry-After: 3600 would stall the run for an hour; max_retry_after (0.2 s) caps it
    flaky = Flaky(lambda answer: Fault(status=429, headers={"Retry-After": "3600"}), times=2)
    with ScriptedServer(flaky) as server:
        result = run(server, tmp_path, data_dir)
        assert len(server.requests) == 3 * (GEN_CALLS + RELABEL_CALLS)
    assert result.rows == reference
    assert result.summary["llm"]["retries"] == 2 * (GEN_CALLS + RELABEL_CALLS)


def test_retry_after_is_read_from_the_provider_response():
    for headers, expected in (({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "250"}, 0.25), ({}, None)):
        with ScriptedServer(lambda m, p, h=headers: Fault(status=429, headers=h)) as server:
            settings = LMSettings(model="hosted_vllm/scripted", api_base=server.base_url, num_retries=0)
            lm = build_handle(settings, settings.model, server.base_url, embedded=False).lm
            with pytest.raises(Exception) as info:
                lm(messages=[{"role": "user", "content": "hi"}])
        assert type(info.value).__name__ == "LMRateLimitError"
        assert retry_after(info.value) == expected
    policy = RetryPolicy(retries=3, backoff=1.0, max_backoff=4.0, max_retry_after=5.0)
    assert policy.delay(info.value, 0) <= 1.0 and policy.delay(info.value, 0) >= 0.5
    assert 2.0 <= policy.delay(info.value, 9) <= 4.0  # doubling stops at max_backoff


def test_500s_are_retried_then_the_call_is_skipped(tmp_path, data_dir, reference):
    once = Flaky(lambda answer: Fault(status=500), times=1)
    with ScriptedServer(once) as server:
        assert run(server, tmp_path / "once", data_dir).rows == reference
    always = Flaky(lambda answer: Fault(status=503), match=about("HUM", "generate"))
    with ScriptedServer(always) as server:
        result = run(server, tmp_path / "always", data_dir)
    assert always.injected == 3
    assert result.rows == without(reference, "HUM")
    assert result.summary["llm"]["errors"] == {"LMServerError": 1}
    assert result.summary["dropped"]["llm_call_failed"] == 1


def test_refused_connections_mid_run_are_skipped_and_a_rerun_finishes(tmp_path, data_dir, reference):
    holder: dict = {}

    def crash_at_relabel(messages: list[dict], params: dict) -> str | Fault:
        if step(messages) == "relabel" and not holder.get("down"):
            holder["down"] = True
            threading.Thread(target=holder["server"].stop).start()  # the server dies: refused from now on
        return Fault(drop=True) if holder.get("down") else healthy()(messages, params)  # in flight: cut

    with ScriptedServer(crash_at_relabel) as server:
        holder["server"] = server
        first = run(server, tmp_path, data_dir)
        served = len(server.requests)
        assert first.rows == [] and first.summary["llm"]["errors"] == {"LMServerError": RELABEL_CALLS}
        server.responder = healthy()
        server.start()
        second = run(server, tmp_path, data_dir)  # the same command again
        assert len(server.requests) - served == RELABEL_CALLS  # only the skipped calls, no generation again
    assert second.rows == reference and second.summary["llm"]["failed_units"] == 0


def test_a_short_outage_is_ridden_out_by_backoff(tmp_path, data_dir, reference):
    holder: dict = {}

    def outage_on_third(messages: list[dict], params: dict) -> str | Fault:
        holder["n"] = holder.get("n", 0) + 1
        if holder["n"] == 3:
            holder["server"].outage(0.2)  # waits of at least 0.1 + 0.2 + 0.4 + 0.4 s outlast it
            return Fault(drop=True)
        return healthy()(messages, params)

    with ScriptedServer(outage_on_third) as server:
        holder["server"] = server
        result = run(server, tmp_path, data_dir, lm={"num_retries": 4, "backoff": 0.2, "max_backoff": 0.8})
    assert result.rows == reference
    assert result.summary["llm"]["failed_units"] == 0 and result.summary["llm"]["retries"] >= 1


def test_truncated_and_garbled_bodies_are_retried(tmp_path, data_dir, reference):
    truncated = Flaky(lambda answer: Fault(body='{"id": "chatcmpl-1", "choices": [{"mess'), times=1)
    with ScriptedServer(truncated) as server:
        assert run(server, tmp_path / "t", data_dir).rows == reference
    garbled = Flaky(lambda answer: Fault(body="<html>502 bad gateway</html>"), match=about("LOC", "generate"))
    with ScriptedServer(garbled) as server:
        result = run(server, tmp_path / "g", data_dir)
    assert garbled.injected == 3 and result.rows == without(reference, "LOC")
    assert result.summary["llm"]["errors"] == {"LMProviderError": 1}


@pytest.mark.parametrize("content", ['{"texts": ["cut off before the end', "Sure! Here are the texts:"])
def test_malformed_json_answers_are_retried_as_a_fresh_sample(tmp_path, data_dir, reference, content):
    # DSPy would repair the first into one (partial) text; a cut-off answer must be asked again instead
    flaky = Flaky(lambda answer: Fault(content=content), match=kind_is_generate, times=1)
    with ScriptedServer(flaky) as server:
        result = run(server, tmp_path, data_dir)
        asked = [r for r in server.requests if step(r["messages"]) == "generate"]
    assert result.rows == reference and result.summary["llm"]["retries"] == GEN_CALLS
    assert len(asked) == 2 * GEN_CALLS


@pytest.mark.parametrize("content", ["", '{"texts": []}'])
def test_empty_answers_use_up_the_attempts_then_the_call_is_skipped(tmp_path, data_dir, reference, content):
    flaky = Flaky(lambda answer: Fault(content=content), match=about("NUM", "generate"))
    with ScriptedServer(flaky) as server:
        result = run(server, tmp_path, data_dir, attempts=3)
    assert flaky.injected == 3 and result.rows == without(reference, "NUM")
    assert sum(result.summary["llm"]["errors"].values()) == 1
    assert result.summary["dropped"]["llm_call_failed"] == 1


def test_labels_outside_the_candidates_are_rejected(tmp_path, data_dir, reference):
    bad = Flaky(lambda answer: Fault(content=json.dumps({"label": "SPORTS"})), match=about("DESC", "relabel"))
    with ScriptedServer(bad) as server:
        result = run(server, tmp_path / "always", data_dir)
    assert bad.injected == 2 * 3 and result.rows == without(reference, "DESC")
    assert result.summary["llm"]["errors"] == {"AdapterParseError": 2}
    assert result.summary["dropped"]["relabel_failed"] == 2
    once = Flaky(lambda answer: Fault(content=json.dumps({"label": "SPORTS"})), times=1,
                 match=lambda m: step(m) == "relabel")
    with ScriptedServer(once) as server:
        assert run(server, tmp_path / "once", data_dir).rows == reference


def test_a_refused_key_stops_the_run(tmp_path, data_dir):
    with ScriptedServer(lambda m, p: Fault(status=401)) as server:
        with pytest.raises(RunStopped, match="refused"):
            run(server, tmp_path, data_dir, num_threads=1)
        assert len(server.requests) == 1  # not retried, and no other call started
    usage = json.loads((tmp_path / "usage.json").read_text())
    assert usage["errors"] == {"LMAuthError": 1} and "refused" in usage["stop_reason"]


# ----------------------------------------------------------------------------------------------------------
# budgets: --max-errors and --max-cost stop a run cleanly; the same command resumes


def cli_augment(server: ScriptedServer, out: Path, data_dir: Path, *extra: str):
    from typer.testing import CliRunner

    from promptmix_dspy.cli.app import app

    args = ["augment", "--dataset", "trec6", "--data-dir", str(data_dir), "--per-class", "2", "--texts-per-call",
            "2", "--top-k", "6", "--max-rounds", "1", "--threads", "2", "--lm", "hosted_vllm/scripted",
            "--api-base", server.base_url, "--out", str(out), *extra]
    return CliRunner().invoke(app, args)


def test_max_errors_stops_cleanly_and_the_same_command_resumes(tmp_path, data_dir, reference):
    with ScriptedServer(Flaky(lambda answer: Fault(content=""), match=kind_is_generate)) as server:
        stopped = cli_augment(server, tmp_path, data_dir, "--max-errors", "1")
        assert stopped.exit_code == 3, stopped.output
        journal = [json.loads(line) for line in (tmp_path / "generated.jsonl").read_text().splitlines()]
        assert 2 <= len(journal) < GEN_CALLS and all(row["error"] for row in journal)  # in-flight work saved
        usage = json.loads((tmp_path / "usage.json").read_text())
        assert "--max-errors 1" in usage["stop_reason"] and usage["failed_units"] == len(journal)
        assert not (tmp_path / "augmented.jsonl").exists()
        server.responder, served = healthy(), len(server.requests)  # the provider recovers
        resumed = cli_augment(server, tmp_path, data_dir, "--max-errors", "1")
        assert len(server.requests) - served == GEN_CALLS + RELABEL_CALLS
    assert resumed.exit_code == 0, resumed.output
    rows = [json.loads(line) for line in (tmp_path / "augmented.jsonl").read_text().splitlines()]
    assert rows == reference


def test_max_cost_covers_the_whole_run_and_nothing_is_paid_twice(tmp_path, data_dir, reference, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with ScriptedServer(healthy()) as server:
        with pytest.raises(RunStopped, match="--max-cost"):
            run(server, tmp_path, data_dir, lm={"model": "openai/gpt-4o-mini"}, max_cost=0.0003)
        first = json.loads((tmp_path / "usage.json").read_text())
        asked_first = len(server.requests)
        with pytest.raises(RunStopped, match="already spent"):  # the same cap: nothing more is spent
            run(server, tmp_path, data_dir, lm={"model": "openai/gpt-4o-mini"}, max_cost=0.0003)
        assert len(server.requests) == asked_first
        result = run(server, tmp_path, data_dir, lm={"model": "openai/gpt-4o-mini"}, max_cost=1.0)
        asked = len(server.requests)
    assert first["cost_usd"] >= 0.0003 and 0 < asked_first < GEN_CALLS + RELABEL_CALLS  # priced by litellm
    assert asked == GEN_CALLS + RELABEL_CALLS  # no call repeated across the sessions
    assert [{**r, "lm": None} for r in result.rows] == [{**r, "lm": None} for r in reference]
    assert result.summary["llm"]["cost_usd"] > 0.0003


def test_the_lm_refuses_calls_once_its_own_spending_reaches_the_cap(monkeypatch):
    """The cap for LLM work outside the runner (an optimizer's calls, `compile --max-cost`): every finished
    call is priced as DSPy records it, and the next one is refused."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with ScriptedServer(lambda messages, params: "a short answer") as server:
        lm = build_handle(LMSettings(model="openai/gpt-4o-mini", api_base=server.base_url, cache=False,
                                     **FAST), "openai/gpt-4o-mini", server.base_url, embedded=False).lm
        lm.limit_spending(1e-9)
        assert lm(messages=[{"role": "user", "content": "hello"}]) == ["a short answer"]
        assert lm.spent > 1e-9  # priced from litellm's table
        with pytest.raises(RunStopped, match="--max-cost"):
            lm(messages=[{"role": "user", "content": "hello again"}])
        assert len(server.requests) == 1
