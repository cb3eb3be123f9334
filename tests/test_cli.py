"""End to end: `promptmix augment` over litellm + HTTP against a scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from promptmix_dspy.testing import ScriptedServer

DATA_KEYS = {"text", "label", "label_raw", "probs_raw", "probs", "confidence", "generated_for", "majority", "minority",
             "majority_share", "relabeled", "lm", "call_id"}


def _promptmix(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptmix_dspy.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_augment_trec6_over_http(tmp_path, data_dir):
    out = tmp_path / "trec6"
    with ScriptedServer() as server:
        proc = _promptmix("augment", "--dataset", "trec6", "--data-dir", str(data_dir), "--shots", "2",
                          "--seed", "0", "--per-class", "4", "--lm", "hosted_vllm/scripted", "--api-base",
                          server.base_url, "--timeout", "30", "--num-retries", "1", "--out", str(out))
        requests = list(server.requests)
        again = _promptmix(*proc.args[3:])  # the same command: resumed from the run folder, no request
        assert len(server.requests) == len(requests)
    assert again.returncode == 0 and "this session: 0 LLM calls" in again.stdout, again.stderr[-2000:]
    assert "this session" not in proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "augmented.jsonl").read_text().splitlines()]
    labels = json.loads((out / "labels.json").read_text())
    assert len(rows) == 24 and all(set(r) == DATA_KEYS for r in rows)
    assert all(r["label"] in labels and r["lm"] == "hosted_vllm/scripted" for r in rows)
    assert "kept 24 examples" in proc.stdout and "LLM calls:" in proc.stdout
    assert "relabel" in proc.stderr  # the progress bars
    # 6 classes x 2 generation calls + 24 relabel calls, all over HTTP, each with explicit max_tokens
    relabel_calls = [r for r in requests if "of one candidate only." in r["messages"][0]["content"]]
    assert len(requests) == 36 and len(relabel_calls) == 24
    assert all(r["max_tokens"] == 256 for r in requests if r not in relabel_calls)
    # one short answer per text, at temperature 0, asking for the answer token's logprobs
    assert all(r["temperature"] == 0.0 and r["max_tokens"] == 16 and r["logprobs"] is True and r["top_logprobs"] == 20
               for r in relabel_calls)
    assert all(set(r["probs"]) <= set(labels) and abs(sum(r["probs"].values()) - 1) < 1e-6 for r in rows)
    config = json.loads((out / "config.json").read_text())
    assert config["lm"]["api_base"] == server.base_url and config["augment"]["top_k"] == 5
    assert (config["lm_transport"]["timeout"], config["lm_transport"]["num_retries"]) == (30.0, 1)


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b"\n')
    proc = _promptmix("augment", "--dataset", str(bad), "--out", str(tmp_path / "out"), "--lm", "openai/none")
    assert proc.returncode == 2
    assert f"{bad}:2: invalid JSON" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unset_api_key_env_is_refused(tmp_path, data_dir):
    proc = _promptmix("augment", "--dataset", "trec6", "--data-dir", str(data_dir), "--out", str(tmp_path / "o"),
                      "--lm", "openai/gpt-4o-mini", "--api-key-env", "PROMPTMIX_TEST_NO_SUCH_KEY")
    assert proc.returncode == 2 and "PROMPTMIX_TEST_NO_SUCH_KEY" in proc.stderr


def test_bad_lm_transport_settings_are_refused(tmp_path, data_dir):
    proc = _promptmix("augment", "--dataset", "trec6", "--data-dir", str(data_dir), "--out", str(tmp_path / "o"),
                      "--lm", "openai/none", "--timeout", "0")
    assert proc.returncode == 2 and "timeout must be > 0" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_describe_command(tmp_path, data_dir):
    with ScriptedServer() as server:
        proc = _promptmix("describe", "--dataset", "subj", "--data-dir", str(data_dir), "--out", str(tmp_path),
                          "--lm", "hosted_vllm/scripted", "--api-base", server.base_url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "descriptions.json").read_text()) == {
        "objective": "texts about objective", "subjective": "texts about subjective"}


def test_a_flag_given_with_its_default_value_still_overrides_the_spec(tmp_path, data_dir):
    spec = tmp_path / "spec.toml"
    spec.write_text('dataset = "trec6"\nmethod = "llm"\nthreads = 1\nteacher_test_limit = 2\n'
                    '[lm]\nmax_tokens = 512\n')
    with ScriptedServer() as server:
        proc = _promptmix("run", "--config", str(spec), "--data-dir", str(data_dir), "--max-tokens", "256",
                          "--threads", "4", "--lm", "hosted_vllm/scripted", "--api-base", server.base_url,
                          "--out", str(tmp_path / "run"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        # the teacher's calls are one-label answers, capped at 16 tokens whatever the setting
        assert {r["max_tokens"] for r in server.requests} == {16}
    config = json.loads((tmp_path / "run" / "experiment.json").read_text())["spec"]
    assert config["lm"]["max_tokens"] == 256  # 256 is the default, and it was given: it overrides the spec's 512


def test_options_that_were_not_given_keep_the_specs_values():
    from promptmix_dspy.cli.options import BudgetOptions, LMOptions, SpecOptions

    lm, budget = LMOptions(max_tokens=256, server_parallel=2), BudgetOptions(threads=4)
    assert lm.fields() == {"max_tokens": 256, "server_parallel": 2}
    assert SpecOptions().overrides(LMOptions(), BudgetOptions()) == {}
    assert SpecOptions(per_class=10).overrides(lm, budget) == {"per_class": 10, "threads": 4,
                                                               "lm": {"max_tokens": 256, "server_parallel": 2}}
