"""Provider batch APIs: OpenAI's Batch API and the OpenAI-compatible ones, and Anthropic's Message Batches (half the
price, answers within 24 hours).

A batched stage runs the same code as a synchronous one, in passes (``run_batched``):

1. a pass runs the stage with a ``BatchStore`` active: every LLM call the stage makes is rendered by the usual
   DSPy adapter (its format step), turned into the provider's request body, and looked up in the store. An
   answered call is handed back to DSPy as the provider's response (litellm's ``mock_response``: DSPy's adapter
   parses it, usage and logprobs included) and the unit is journaled exactly as a synchronous answer is; an
   unanswered one is recorded and the unit waits (``Deferred``: neither journaled nor counted);
2. the recorded requests go to the provider as one batch (a JSONL file, litellm's files and batches API),
   polled with a progress bar; the answers are appended to the store;
3. the next pass answers those calls, and makes the requests that depend on them (a re-ask, the relabeling of
   the generated texts, a later round); passes go on until one records no request.

Nothing is lost: the store is a journal in the run folder (``batch/answers.jsonl``) and every submitted batch is
recorded in ``batch/state.json`` before it is polled, so Ctrl-C or a crash during polling leaves the batch id
behind and a re-run polls that batch instead of submitting again. Failed and expired items are sent again (in
the next batch, or synchronously with ``fallback="sync"``), up to ``max_batches`` times, then recorded as
failed (counted and skipped like any failed call). A provider's file that is not what was asked for (a line
that is not JSON, a custom_id never sent) is a clear error naming the file and line; nothing in the store is
lost. A request's custom_id is the sha256 of its body and its sample index (DSPy's rollout id), so the same
call in a later pass finds its answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from promptmix_dspy.store.files import Journal, atomic_write_json, read_json

__all__ = ["BATCH_DISCOUNT", "AnthropicBatchClient", "BatchClient", "BatchError", "BatchStore", "Deferred", "active_store", "in_batches",
           "request_body", "run_batched", "wait_for_batch"]

logger = logging.getLogger(__name__)
BATCH_DISCOUNT = 0.5  # OpenAI's Batch API and Anthropic's Message Batches bill at half the synchronous price
# One batched stage at a time per process; a global, not a ContextVar: the stage's calls run on worker threads
_active: list["BatchStore"] = []
_lock = threading.Lock()
# kwargs that are the client's business, not the provider's request body
_CLIENT_KEYS = {"api_base", "api_key", "timeout", "num_retries", "cache", "rollout_id", "headers", "mock_response",
                "cache_control_injection_points", "extra_headers", "request_timeout", "model_list"}
FINAL = ("completed", "failed", "expired", "cancelled")


class Deferred(Exception):
    """The call waits for a batch: its unit is neither journaled nor counted in this pass."""


class BatchError(RuntimeError):
    """A batch answer or file the provider sent is not what was asked for; the message names the file and line."""


def active_store() -> "BatchStore | None":
    return _active[-1] if _active else None


def request_body(model: str, messages: list[dict], kwargs: dict) -> dict:
    """The chat-completions body of one call, as it goes in a batch file (the provider's model name)."""
    body = {"model": model.split("/", 1)[1] if "/" in model else model, "messages": messages}
    extra = kwargs.get("extra_body") or {}
    body.update({k: v for k, v in kwargs.items() if k not in _CLIENT_KEYS and k != "extra_body" and v is not None})
    body.update(extra)
    if isinstance(body.get("response_format"), type):  # a pydantic model (structured outputs): its JSON schema
        from litellm.utils import type_to_response_format_param

        body["response_format"] = type_to_response_format_param(body["response_format"])
    return body


def custom_id(body: dict, rollout: Any) -> str:
    data = json.dumps({"body": body, "rollout": rollout}, sort_keys=True, ensure_ascii=False, default=str)
    return "pm-" + hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


@dataclass
class BatchStore:
    """The answers batches gave (a journal) and the requests this pass still needs."""

    folder: Path
    fallback: str = "batch"  # what a failed or expired item becomes: another batch, or a synchronous call
    max_batches: int = 3  # batches an item may be sent in before it is recorded as failed
    pending: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fallback not in ("batch", "sync"):
            raise ValueError(f"batch fallback must be 'batch' or 'sync', got {self.fallback!r}")
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.answers = Journal(self.folder / "answers.jsonl", key="custom_id")

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def state(self) -> dict:
        return read_json(self.state_path) if self.state_path.exists() else {"batches": []}

    def save_state(self, state: dict) -> None:
        atomic_write_json(self.state_path, state)
        self._in_flight = None

    def in_flight(self) -> set[str]:
        if getattr(self, "_in_flight", None) is None:
            self._in_flight = {cid for b in self.state()["batches"] if not b.get("absorbed") for cid in b["custom_ids"]}
        return self._in_flight

    def tries(self, cid: str) -> int:
        return sum(cid in b["custom_ids"] for b in self.state()["batches"])

    # -- lookups, during a pass -------------------------------------------------------------------------------
    def lookup(self, cid: str, body: dict) -> dict | None:
        """The answer of a call: {"body": response} or {"error": ...}; {"sync": True} where the call is to be made
        synchronously (fallback); None when it waits for a batch (recorded for the next one)."""
        found = self.answers.get(cid)
        if found is not None and (found.get("body") is not None or found.get("final") or found.get("sync")):
            return found
        if cid not in self.in_flight():
            with _lock:
                self.pending[cid] = body
        return None

    @contextlib.contextmanager
    def active(self) -> Iterator["BatchStore"]:
        if _active:
            raise RuntimeError("a batched stage is already running in this process")
        _active.append(self)
        try:
            yield self
        finally:
            _active.clear()

    # -- answers, after a batch ------------------------------------------------------------------------------
    def absorb(self, batch: dict, output: str | None, errors: str | None, status: str, where: dict) -> dict:
        """Record a finished batch's answers; an item it did not answer is sent again, or recorded as failed
        once it has been in ``max_batches`` batches. Returns counts."""
        sent = set(batch["custom_ids"])
        answered = self._lines(output, sent, where.get("output", "output file"))
        failed = self._lines(errors, sent, where.get("error", "error file"))
        counts = {"answered": 0, "failed": 0, "again": 0}
        for cid in batch["custom_ids"]:
            line = answered.get(cid) or failed.get(cid)
            response = (line or {}).get("response") or {}
            if line and response.get("status_code") == 200 and response.get("body"):
                self.answers.append({"custom_id": cid, "body": response["body"], "batch": batch["id"]})
                counts["answered"] += 1
                continue
            why = _why(line, status)
            if self.tries(cid) >= self.max_batches:
                self.answers.append({"custom_id": cid, "error": why, "final": True, "batch": batch["id"]})
                counts["failed"] += 1
            else:
                if self.fallback == "sync":
                    self.answers.append({"custom_id": cid, "sync": True, "error": why, "batch": batch["id"]})
                counts["again"] += 1
        return counts

    @staticmethod
    def _lines(text: str | None, sent: set[str], name: str) -> dict[str, dict]:
        out = {}
        for number, line in enumerate((text or "").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BatchError(f"{name}, line {number}: not JSON ({exc.msg}); the answers recorded so far are "
                                 f"kept, and the batch can be polled again") from exc
            cid = row.get("custom_id") if isinstance(row, dict) else None
            if cid not in sent:
                raise BatchError(f"{name}, line {number}: custom_id {cid!r} was never sent in this batch")
            out[cid] = row
        return out


def _why(line: dict | None, status: str) -> str:
    if line is None:
        return f"no answer in the batch (status {status})"
    error = line.get("error") or (line.get("response") or {}).get("body", {}).get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    code = (line.get("response") or {}).get("status_code")
    return f"batch item failed ({code}): {message}" if message or code else "batch item failed"


class BatchClient:
    """litellm's files and batches API for one provider (OpenAI and OpenAI-compatible endpoints)."""

    def __init__(self, provider: str = "openai", api_base: str | None = None, api_key: str | None = None,
                 poll_seconds: float = 30.0, window: str = "24h"):
        self.provider, self.api_base, self.api_key = provider, api_base, api_key
        self.poll_seconds, self.window = poll_seconds, window

    def _kw(self) -> dict:
        kw = {"custom_llm_provider": self.provider}
        if self.api_base:
            kw["api_base"] = self.api_base
        if self.api_key:
            kw["api_key"] = self.api_key
        return kw

    def submit(self, lines: list[dict]) -> tuple[str, str]:
        """Upload the JSONL and create the batch; (batch id, input file id)."""
        import litellm

        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        upload = litellm.create_file(file=("promptmix-batch.jsonl", io.BytesIO(data)), purpose="batch", **self._kw())
        batch = litellm.create_batch(completion_window=self.window, endpoint="/v1/chat/completions",
                                     input_file_id=upload.id, **self._kw())
        return batch.id, upload.id

    def retrieve(self, batch_id: str) -> Any:
        import litellm

        return litellm.retrieve_batch(batch_id=batch_id, **self._kw())

    def content(self, file_id: str | None) -> str | None:
        import litellm

        if not file_id:
            return None
        response = litellm.file_content(file_id=file_id, **self._kw())
        raw = getattr(response, "content", None) or getattr(response, "text", None)
        return raw.decode("utf-8") if isinstance(raw, bytes) else raw


class AnthropicBatchClient(BatchClient):
    """Anthropic's Message Batches API (POST /v1/messages/batches; litellm here polls and reads results but cannot
    create one), spoken directly over HTTP in its documented shapes, with each request and answer translated to and
    from the chat-completions form the rest of the path uses. Anthropic returns no logprobs: its answers are hard
    labels."""

    VERSION = "2023-06-01"

    def __init__(self, api_base: str | None = None, api_key: str | None = None, poll_seconds: float = 30.0):
        import os

        super().__init__("anthropic", api_base, api_key, poll_seconds)
        self.api_base = (api_base or "https://api.anthropic.com").rstrip("/").removesuffix("/v1")
        self.api_key = api_key or os.environ.get("ANTHROPIC_API_KEY", "")

    def _headers(self) -> dict:
        return {"x-api-key": self.api_key, "anthropic-version": self.VERSION, "content-type": "application/json"}

    def submit(self, lines: list[dict]) -> tuple[str, str]:
        import httpx

        requests = [{"custom_id": line["custom_id"], "params": anthropic_params(line["body"])} for line in lines]
        response = httpx.post(f"{self.api_base}/v1/messages/batches", json={"requests": requests},
                              headers=self._headers(), timeout=120)
        response.raise_for_status()
        return response.json()["id"], ""

    def retrieve(self, batch_id: str) -> Any:
        import httpx
        from types import SimpleNamespace

        response = httpx.get(f"{self.api_base}/v1/messages/batches/{batch_id}", headers=self._headers(), timeout=120)
        response.raise_for_status()
        batch = response.json()
        counts = batch.get("request_counts") or {}
        ended = batch.get("processing_status") == "ended"
        status = "completed" if ended else "in_progress"
        if ended and counts.get("expired") and not counts.get("succeeded"):
            status = "expired"
        done = SimpleNamespace(completed=counts.get("succeeded", 0),
                               failed=sum(counts.get(k, 0) for k in ("errored", "expired", "canceled")))
        return SimpleNamespace(id=batch_id, status=status, request_counts=done,
                               output_file_id=batch.get("results_url") if ended else None, error_file_id=None)

    def content(self, file_id: str | None) -> str | None:
        import httpx

        if not file_id:
            return None
        response = httpx.get(file_id, headers=self._headers(), timeout=600)
        response.raise_for_status()
        return "".join(json.dumps(openai_line(json.loads(line))) + "\n" for line in response.text.splitlines()
                       if line.strip())


def anthropic_params(body: dict) -> dict:
    """A chat-completions body as Anthropic Messages parameters (system apart; no logprobs, no response_format)."""
    system = "\n\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
    params = {"model": body["model"], "max_tokens": body.get("max_tokens", 256),
              "messages": [{"role": m["role"], "content": m["content"]} for m in body["messages"]
                           if m["role"] != "system"]}
    if system:
        params["system"] = system
    for key in ("temperature", "top_p", "stop_sequences"):
        if body.get(key) is not None:
            params[key] = body[key]
    return params


def openai_line(result: dict) -> dict:
    """An Anthropic batch result line as an OpenAI batch output line (its answer as a chat completion)."""
    outcome = result.get("result") or {}
    if outcome.get("type") != "succeeded":
        return {"custom_id": result.get("custom_id"), "response": None,
                "error": {"code": outcome.get("type"), "message": json.dumps(outcome.get("error"))}}
    message = outcome["message"]
    text = "".join(block.get("text", "") for block in message.get("content", []) if block.get("type") == "text")
    usage = message.get("usage") or {}
    body = {"id": message.get("id"), "object": "chat.completion", "created": int(time.time()),
            "model": message.get("model"), "choices": [{"index": 0, "finish_reason": "stop",
                                                        "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": usage.get("input_tokens", 0), "completion_tokens": usage.get("output_tokens", 0),
                      "total_tokens": usage.get("input_tokens", 0) + usage.get("output_tokens", 0)}}
    return {"custom_id": result["custom_id"], "response": {"status_code": 200, "body": body}, "error": None}


def _wait(client: BatchClient, batch_id: str, total: int) -> Any:
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=f"batch {batch_id[:16]}", unit="request", mininterval=1.0) as bar:
        while True:
            batch = client.retrieve(batch_id)
            counts = getattr(batch, "request_counts", None)
            done = (getattr(counts, "completed", 0) or 0) + (getattr(counts, "failed", 0) or 0)
            bar.update(max(0, done - bar.n))
            bar.set_postfix(status=batch.status)
            if batch.status in FINAL:
                return batch
            time.sleep(client.poll_seconds)


def run_batched(stage: Callable[[], Any], store: BatchStore, client: BatchClient, max_passes: int = 50) -> Any:
    """Run ``stage`` in passes until it needs no batch (module docstring); returns its last result."""
    _finish_in_flight(store, client)
    for _ in range(max_passes):
        store.pending = {}
        result = None
        with store.active():
            try:
                result = stage()
            except Deferred:  # a step that needs the answers of calls still waiting stopped the pass
                if not store.pending:
                    raise
        if not store.pending:
            return result
        _send(store, client)
    raise BatchError(f"the stage still needed batches after {max_passes} passes (see {store.folder})")


def _send(store: BatchStore, client: BatchClient) -> None:
    ids = sorted(store.pending)
    lines = [{"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": store.pending[cid]}
             for cid in ids]
    batch_id, file_id = client.submit(lines)
    state = store.state()
    state["batches"].append({"id": batch_id, "input_file_id": file_id, "custom_ids": ids, "submitted": time.time()})
    store.save_state(state)  # before polling: a crash from here on resumes this batch, never submits it again
    logger.info("submitted batch %s (%d requests)", batch_id, len(ids))
    _finish_in_flight(store, client)


def _finish_in_flight(store: BatchStore, client: BatchClient) -> None:
    """Poll every recorded batch not yet absorbed, and absorb its answers."""
    for entry in store.state()["batches"]:
        if entry.get("absorbed"):
            continue
        batch = _wait(client, entry["id"], len(entry["custom_ids"]))
        output = client.content(getattr(batch, "output_file_id", None))
        errors = client.content(getattr(batch, "error_file_id", None))
        where = {"output": f"batch {entry['id']} output file {getattr(batch, 'output_file_id', None)}",
                 "error": f"batch {entry['id']} error file {getattr(batch, 'error_file_id', None)}"}
        counts = store.absorb(entry, output, errors, batch.status, where)
        state = store.state()
        for saved in state["batches"]:
            if saved["id"] == entry["id"]:
                saved.update(absorbed=True, status=batch.status, counts=counts)
        store.save_state(state)
        logger.info("batch %s %s: %s", entry["id"], batch.status, counts)


def in_batches(handle: Any, folder: Path, stage: Callable[[], Any]) -> Any:
    """``stage()`` through the provider's batch API when the handle asks for it (``handle.batch``), else (or when a
    batched stage is already running, whose passes include this one) as it is."""
    options = getattr(handle, "batch", None)
    if not options or active_store() is not None:
        return stage()
    provider = handle.model.split("/", 1)[0]
    key, poll = getattr(handle.lm, "kwargs", {}).get("api_key"), options.get("poll_seconds", 30.0)
    if provider == "anthropic":
        client: BatchClient = AnthropicBatchClient(handle.api_base, key, poll)
    else:
        client = BatchClient("openai" if provider in ("openai", "hosted_vllm") else provider, handle.api_base, key,
                             poll_seconds=poll)
    store = BatchStore(Path(folder) / "batch", fallback=options.get("fallback", "batch"))
    return run_batched(stage, store, client)


def wait_for_batch() -> None:
    """Called between steps that depend on each other: inside a batched pass whose earlier calls still wait for
    their batch, stop the pass here (the next pass goes on with their answers); otherwise do nothing."""
    store = active_store()
    if store is not None and store.pending:
        raise Deferred("the next step needs answers still waiting for their batch")
