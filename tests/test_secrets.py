"""API keys never reach a written file, a log or a saved program; programs load from JSON, never pickle.

Jobs run in subprocesses with sentinel keys in the environment (OPENAI_API_KEY, and a custom variable passed
with --api-key-env) and --verbose logging, against a scripted server that checks the key arrived and, like
some real providers, echoes it back in error messages. Then every file the jobs wrote is searched.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from promptmix_dspy.store.files import Journal, atomic_write_json
from promptmix_dspy.store.redaction import redact, register_secret
from promptmix_dspy.testing import Fault, RuleResponder, ScriptedServer, parse_fields, stable_generate

OPENAI_SENTINEL = "sk-SENTINEL-openai-5f1e0c9a7d3b"
CUSTOM_SENTINEL = "SENTINEL-custom-8c2d4e6f0a1b"
SENTINELS = (OPENAI_SENTINEL, CUSTOM_SENTINEL)


class LeakyProvider:
    """Answers well, except that it echoes the caller's keys in two error messages: a 400 (the call is
    skipped, its error journaled) and a 500 (retried)."""

    def __init__(self):
        self.inner, self.echoed = RuleResponder(generate=stable_generate), set()

    def __call__(self, messages: list[dict], params: dict) -> str | Fault:
        fields = parse_fields(messages[-1]["content"])
        text = fields.get("text", fields.get("texts", ""))
        for status, needle in ((400, "a ABBR text"), (500, "a DESC text")):
            if needle in text and needle not in self.echoed:
                self.echoed.add(needle)
                key = ScriptedServer.current_headers().get("authorization", "").removeprefix("Bearer ")
                body = {"error": {"message": f"request with key {key} refused", "code": "x"}}
                return Fault(status=status, body=json.dumps(body))
        return self.inner(messages, params)


def promptmix(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": OPENAI_SENTINEL, "PROMPTMIX_CRED": CUSTOM_SENTINEL,
           "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")}
    proc = subprocess.run([sys.executable, "-m", "promptmix_dspy.cli", *args, "--verbose"], capture_output=True,
                          text=True, env=env, timeout=600)
    (tmp_path / "logs").mkdir(exist_ok=True)
    (tmp_path / "logs" / f"{name}.out").write_text(proc.stdout)
    (tmp_path / "logs" / f"{name}.err").write_text(proc.stderr)
    return proc


def files_holding_a_sentinel(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        data = path.read_bytes() if path.is_file() else b""
        hits += [f"{path}: {s}" for s in SENTINELS if s.encode() in data or s[8:].encode() in data]
    return hits


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, data_dir) -> tuple[Path, ScriptedServer, dict]:
    """compile + augment with --api-key-env, and augment with OPENAI_API_KEY, all against a leaky provider."""
    root = tmp_path_factory.mktemp("secrets")
    common = ["--dataset", "trec6", "--data-dir", str(data_dir), "--top-k", "6", "--threads", "2"]
    with ScriptedServer(LeakyProvider()) as server:
        custom = ["--lm", "hosted_vllm/scripted", "--api-base", server.base_url, "--api-key-env", "PROMPTMIX_CRED"]
        jobs = {
            "compile": ["compile", *common, *custom, "--program", "relabeler", "--optimizer", "bootstrap",
                        "--opt", "max_bootstrapped_demos=1", "--out", str(root / "programs")],
            "augment": ["augment", *common, *custom, "--per-class", "2", "--programs", str(root / "programs"),
                        "--out", str(root / "run-custom")],
            "augment-openai": ["augment", *common, "--lm", "openai/gpt-4o-mini", "--api-base", server.base_url,
                               "--per-class", "2", "--out", str(root / "run-openai")],
        }
        procs = {}
        for name, args in jobs.items():
            server.responder = LeakyProvider()  # each job meets both leaks
            procs[name] = promptmix(root, name, *args)
    return root, server, procs


def test_jobs_ran_with_the_keys_and_met_the_leaks(jobs):
    root, server, procs = jobs
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    sent = {h.get("authorization") for h in server.headers}
    assert sent == {f"Bearer {OPENAI_SENTINEL}", f"Bearer {CUSTOM_SENTINEL}"}  # each key was really used
    summary = json.loads((root / "run-openai" / "summary.json").read_text())
    assert summary["llm"]["errors"] == {"LMInvalidRequestError": 1}  # the 400 was journaled and skipped
    assert summary["llm"]["retries"] >= 1  # the 500 was retried
    assert "DEBUG" in (root / "logs" / "augment.err").read_text()  # --verbose logging was captured


def test_no_written_file_or_log_holds_a_key(jobs):
    root, _, _ = jobs
    written = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "relabeler.json" for p in written) and any(p.name == "generated.jsonl" for p in written)
    assert files_holding_a_sentinel(root) == []
    failed = [json.loads(line) for line in (root / "run-openai" / "relabeled.jsonl").read_text().splitlines()]
    assert any("***" in (row["error"] or "") for row in failed)  # the echoed key was masked, not dropped


def test_a_pickled_program_is_refused_and_never_run(jobs, tmp_path, data_dir):
    root, server, _ = jobs
    programs, marker = tmp_path / "programs", tmp_path / "pickle-ran"
    programs.mkdir()
    meta = json.loads((root / "programs" / "meta.json").read_text())
    meta["programs"]["relabeler"]["file"] = "relabeler.pkl"
    (programs / "meta.json").write_text(json.dumps(meta))
    (programs / "relabeler.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))
    with ScriptedServer(RuleResponder()) as other:
        proc = promptmix(tmp_path, "pickle", "augment", "--dataset", "trec6", "--data-dir", str(data_dir),
                         "--top-k", "6", "--per-class", "2", "--lm", "hosted_vllm/scripted", "--api-base",
                         other.base_url, "--programs", str(programs), "--out", str(tmp_path / "run"))
        assert len(other.requests) == 0
    assert proc.returncode == 2 and ".pkl" in proc.stderr
    assert not marker.exists()


class _Payload:
    """Unpickling this creates ``marker``: the proof that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


# ----------------------------------------------------------------------------------------------------------
# the guard itself


def test_redact_masks_env_keys_and_registered_values(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-0123456789abcdef")
    register_secret("custom-credential-value")
    text = "keys sk-ant-0123456789abcdef and custom-credential-value, and a plain word"
    assert redact(text) == "keys *** and ***, and a plain word"
    journal = Journal(tmp_path / "j.jsonl", key="k")
    journal.append({"k": "1", "error": text})
    atomic_write_json(tmp_path / "a.json", {"error": text})
    for path in (tmp_path / "j.jsonl", tmp_path / "a.json"):
        written = path.read_text()
        assert "sk-ant" not in written and "custom-credential" not in written and "plain word" in written


def test_a_saved_program_holds_no_key_even_with_an_lm_attached(tmp_path, monkeypatch):
    from promptmix_dspy.llm.settings import LMSettings, build_handle
    from promptmix_dspy.method.modules import Relabeler
    from promptmix_dspy.method.signatures import ClassCard

    monkeypatch.setenv("PROMPTMIX_CRED", CUSTOM_SENTINEL)
    settings = LMSettings(model="openai/gpt-4o-mini", api_key_env="PROMPTMIX_CRED")
    relabeler = Relabeler([ClassCard(name=n, description=n, examples=[f"{n} text"]) for n in ("a", "b")])
    relabeler.relabel.lm = build_handle(settings, settings.model, None, embedded=False).lm
    relabeler.save(str(tmp_path / "relabeler.json"))
    saved = (tmp_path / "relabeler.json").read_text()
    assert "gpt-4o-mini" in saved and CUSTOM_SENTINEL not in saved


def test_atomic_write_gives_a_normal_file_mode(tmp_path):
    """mkstemp creates 0600 files; a written result must get the mode open() would give (0666 less the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask
