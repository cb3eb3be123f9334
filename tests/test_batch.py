"""The provider batch API path (llm/batch.py) against a scripted server that follows OpenAI's documented files and
batches formats (checked against the openai client's types through litellm): the same rows as a synchronous
run, only failed or expired items sent again, a kill during polling resumed without a second submission, a bad
file from the provider a clear error that loses nothing, and the batch price. Not exercised against a live
provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptmix_dspy.llm.batch import BatchClient, BatchError, BatchStore, run_batched
from promptmix_dspy.llm.settings import LMSettings
from promptmix_dspy.pipeline.augment import augment
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.testing import RuleResponder, ScriptedServer, stable_generate

CONFIG = dict(per_class=2, texts_per_call=2, top_k=6, num_threads=2, max_rounds=1)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-scripted-not-a-key")


def _settings(server: ScriptedServer, model: str = "openai/gpt-4o-mini", **extra) -> LMSettings:
    return LMSettings(model=model, api_base=server.base_url, cache=False, batch_poll_seconds=0.01, **extra)


def _run(server: ScriptedServer, out: Path, data_dir: Path, batch: bool, **extra):
    return augment("trec6", out, AugmentConfig(**CONFIG), _settings(server, batch_api=batch, **extra), data_dir=data_dir)


def _chat_lines(server: ScriptedServer) -> int:
    return sum(b["request_counts"]["total"] for b in server.batches.values())


def test_a_batch_run_writes_the_same_rows_as_a_synchronous_one_at_half_the_price(tmp_path, data_dir):
    with ScriptedServer(RuleResponder(generate=stable_generate)) as server:
        sync = _run(server, tmp_path / "sync", data_dir, batch=False)
        direct = len(server.requests)
        batch = _run(server, tmp_path / "batch", data_dir, batch=True)
        assert len(server.requests) == direct  # no chat call outside the batches
    assert (tmp_path / "sync" / "augmented.jsonl").read_bytes() == (tmp_path / "batch" / "augmented.jsonl").read_bytes()
    assert len(server.batches) == 2 and _chat_lines(server) == direct  # generation, then the relabel calls
    state = json.loads((tmp_path / "batch" / "batch" / "state.json").read_text())
    assert [b["id"] for b in state["batches"]] == ["batch_1", "batch_2"] and all(b["absorbed"] for b in state["batches"])
    s, b = sync.summary["llm"], batch.summary["llm"]
    assert (b["prompt_tokens"], b["completion_tokens"]) == (s["prompt_tokens"], s["completion_tokens"])
    assert b["cost_usd"] == pytest.approx(s["cost_usd"] / 2, rel=1e-6) and s["cost_usd"] > 0


def test_failed_and_expired_items_and_only_those_are_sent_again(tmp_path, data_dir):
    faulted: set[str] = set()

    def fault(custom_id: str, body: dict) -> str | None:  # in the first batch only: one item failed, one expired
        if server.batches or len(faulted) >= 2:
            return None
        faulted.add(custom_id)
        return "fail" if len(faulted) == 1 else "expire"

    with ScriptedServer(RuleResponder(generate=stable_generate)) as server:
        server.batch_fault = fault
        result = _run(server, tmp_path, data_dir, batch=True)
        first = server.batches["batch_1"]
        resent = json.loads(server.files[server.batches["batch_2"]["input_file_id"]]["data"].decode().splitlines()[0])
    assert first["final"] == "expired" and result.summary["llm"]["failed_units"] == 0 and len(result.rows) == 12
    second = {json.loads(line)["custom_id"] for line in
              server.files[server.batches["batch_2"]["input_file_id"]]["data"].decode().splitlines()}
    # batch 2 holds exactly the two generation items batch 1 did not answer (the relabel calls wait for them)
    assert len(faulted) == 2 and second == faulted and len(server.batches) == 3
    assert resent["url"] == "/v1/chat/completions" and resent["body"]["model"] == "gpt-4o-mini"


def test_a_failed_item_can_fall_back_to_a_synchronous_call(tmp_path, data_dir):
    with ScriptedServer(RuleResponder(generate=stable_generate)) as server:
        server.batch_fault = lambda cid, body: "fail"
        result = _run(server, tmp_path, data_dir, batch=True, batch_fallback="sync")
        direct = [r for r in server.requests if "messages" in r]
    assert len(result.rows) == 12 and len(server.batches) == 2  # each stage's one batch failed every item
    assert len(direct) == _chat_lines(server)  # ... and every item was then called at once


class Interrupting(BatchClient):
    """Ctrl-C while the first batch is polled."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.polls = 0

    def retrieve(self, batch_id: str):
        self.polls += 1
        if self.polls == 1:
            raise KeyboardInterrupt
        return super().retrieve(batch_id)


def test_a_kill_during_polling_resumes_the_batch_without_submitting_it_again(tmp_path, data_dir):
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.llm.settings import open_lm
    from promptmix_dspy.pipeline.augment import run_augment

    ds = load_dataset("trec6", data_dir=data_dir)
    with ScriptedServer(RuleResponder(generate=stable_generate)) as server:
        with open_lm(_settings(server)) as handle:
            store = BatchStore(tmp_path / "batch")
            client = Interrupting("openai", server.base_url, "sk-scripted-not-a-key", poll_seconds=0.01)
            stage = lambda: run_augment(ds, tmp_path, AugmentConfig(**CONFIG), handle)  # noqa: E731
            with pytest.raises(KeyboardInterrupt):
                run_batched(stage, store, client)
            state = json.loads((tmp_path / "batch" / "state.json").read_text())
            assert [b["id"] for b in state["batches"]] == ["batch_1"] and not state["batches"][0].get("absorbed")
            result = run_batched(stage, BatchStore(tmp_path / "batch"), client)  # the same command again
    assert len(server.batches) == 2 and len(result.rows) == 12  # batch 1 polled again, batch 2 the relabel calls


@pytest.mark.parametrize("broken,message", [
    (lambda text: text + "not json\n", r"output file .*line \d+: not JSON"),
    (lambda text: text + json.dumps({"custom_id": "pm-never-sent", "response": {}}) + "\n",
     r"line \d+: custom_id 'pm-never-sent' was never sent in this batch")])
def test_a_bad_file_from_the_provider_is_a_clear_error_that_loses_nothing(tmp_path, data_dir, broken, message):
    with ScriptedServer(RuleResponder(generate=stable_generate)) as server:
        server.batch_output_hook = broken
        with pytest.raises(BatchError, match=message):
            _run(server, tmp_path, data_dir, batch=True)
        state = json.loads((tmp_path / "batch" / "state.json").read_text())
        assert state["batches"][0]["id"] == "batch_1" and not state["batches"][0].get("absorbed")
        server.batch_output_hook = None
        server.batches["batch_1"]["output_file_id"] = server.upload(  # the provider mends its file
            "batch_output.jsonl", server.files[server.batches["batch_1"]["output_file_id"]]["data"]
            .decode().rsplit("\n", 2)[0].encode() + b"\n", "batch_output")["id"]
        result = _run(server, tmp_path, data_dir, batch=True)  # the same command: batch 1 is read again
    assert len(result.rows) == 12 and "batch_1" in {b["id"] for b in json.loads(
        (tmp_path / "batch" / "state.json").read_text())["batches"]}


def test_the_dry_run_prints_the_batch_price_beside_the_synchronous_one():
    from promptmix_dspy.experiments.estimate import Estimate, format_estimate

    text = format_estimate([Estimate("trec6", "relabel", 100, 100, 100_000, 300)], "openai/gpt-4o-mini")
    sync, batch = [float(x) for x in __import__("re").findall(r"\$(\d+\.\d+)", text)]
    assert batch == pytest.approx(sync / 2, abs=1e-4) and "--batch-api" in text


def test_the_embedded_server_refuses_the_batch_api():
    from promptmix_dspy.llm.settings import build_handle

    with pytest.raises(ValueError, match="batch-api is for a provider"):
        build_handle(LMSettings(batch_api=True), "hosted_vllm/x", "http://127.0.0.1:1/v1", embedded=True)


def test_anthropic_message_batches_give_the_same_rows_as_synchronous_calls(tmp_path, data_dir, monkeypatch):
    """Anthropic's Message Batches in their documented shapes (requests with params, results with a type per
    item); its answers carry no logprobs, so the rows keep the LLM's answers as hard labels."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-scripted")
    from promptmix_dspy.llm import batch as batch_module

    with ScriptedServer(RuleResponder(generate=stable_generate)) as server:
        settings = LMSettings(model="anthropic/claude-3-5-haiku-latest", api_base=server.base_url, cache=False,
                              batch_api=True, batch_poll_seconds=0.01, adapter="promptmix")
        result = augment("trec6", tmp_path, AugmentConfig(**CONFIG), settings, data_dir=data_dir)
        lines = [r for b in server.batches.values() for r in b["results"]]
    assert len(result.rows) == 12 and all("probs" not in r for r in result.rows)
    assert list(server.batches) == ["msgbatch_1", "msgbatch_2"] and len(lines) == 18
    assert all(r["result"]["type"] == "succeeded" for r in lines)
    params = batch_module.anthropic_params({"model": "m", "messages": [{"role": "system", "content": "s"},
                                                                        {"role": "user", "content": "u"}],
                                            "max_tokens": 16, "temperature": 0.0, "logprobs": True})
    assert params == {"model": "m", "max_tokens": 16, "system": "s", "temperature": 0.0,
                      "messages": [{"role": "user", "content": "u"}]}
