"""Scripted LMs for tests and benchmarks: an in-process dspy engine and a real OpenAI-compatible HTTP server.

Both answer through one ``responder(messages, params) -> str``, and both record what was sent, so tests can
assert on the prompt. ``RuleResponder`` reads the signature's output fields from the prompt and answers in
JSON, like a well-behaved model. The HTTP server can also inject faults (status codes, Retry-After, delays,
dropped connections, truncated bodies) for reliability tests.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

__all__ = ["ConcurrencyProbe", "Fault", "RuleResponder", "ScriptedServer", "candidate_codes", "candidate_names",
           "distinct_words", "numbered", "parse_fields", "scripted_lm", "scripted_logprobs", "stable_generate"]

Responder = Callable[[list[dict], dict], "str | Fault"]
_local = threading.local()  # the request a server thread is answering
_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\Z)", re.S)


def parse_fields(content: str) -> dict[str, str]:
    """The ``[[ ## name ## ]]`` blocks of a DSPy prompt message, as raw strings."""
    return {m.group(1): m.group(2).strip() for m in _FIELD.finditer(content)}


def _output_fields(system: str) -> list[str]:
    """The output fields a prompt asks for: from the lean adapter's 'Answer with a JSON object: {...}' line, or
    from DSPy's 'Your output fields are:' list."""
    answer = re.search(r"Answer with a JSON object: (\{.*)", system)
    if answer:
        return re.findall(r'(?:^\{|, )"(\w+)":', answer.group(1))
    part = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
    return re.findall(r"\d+\. `(\w+)`", part)


def candidate_names(block: str) -> list[str]:
    """Class names from a rendered candidate_classes block: '- NAME: description' or '- CODE. NAME: description'
    lines, or a JSON list."""
    return [name for _, name in candidate_codes(block)]


def candidate_codes(block: str) -> list[tuple[str | None, str]]:
    """(code or None, name) of each class in a rendered candidate_classes block."""
    block = block.strip()
    if block.startswith("["):
        return [(c.get("code"), c["name"]) for c in json.loads(block)]
    out = []
    for m in re.finditer(r"^- (.+?): ", block, re.M):
        coded = re.match(r"^([A-Z])\. (.+)$", m.group(1))
        out.append((coded.group(1), coded.group(2)) if coded else (None, m.group(1)))
    return out


ONE_LABEL = re.compile(r"Answer with (?:the class name|the letter of the class) of one candidate only\.")


def numbered(block: str) -> list[str]:
    """The items of a rendered list input ('1. first', '2. second'), or of a JSON list."""
    block = block.strip()
    if block.startswith("["):
        return [str(x) for x in json.loads(block)]
    if block == "(none)":
        return []
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", block, re.M)]


@dataclass
class RuleResponder:
    """Answers DSPy prompts by rule. Override the three hooks to script behaviour.

    relabel: (text, candidates) -> label, for each text asked about; default picks the candidate whose name
    occurs in the text, else the first candidate. generate: (fields, call_number) -> texts; default writes
    num_texts distinct texts naming the majority (and minority) class. describe: (fields) -> sentence.
    propose: (output field, fields) -> text, for any other prompt (an optimizer's own: MIPROv2's instruction
    proposals and data summaries, GEPA's reflection); default a plain sentence.
    ``fields`` holds every ``[[ ## name ## ]]`` block of the prompt (system and last user message).
    """

    relabel: Callable[[str, list[str]], str] | None = None
    generate: Callable[[dict, int], list[str]] | None = None
    describe: Callable[[dict], str] | None = None
    propose: Callable[[str, dict], str] | None = None
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, messages: list[dict], params: dict) -> str:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        fields = {**parse_fields(system), **parse_fields(messages[-1]["content"])}
        with self._lock:
            self.calls += 1
            n = self.calls
        if ONE_LABEL.search(system):
            return self._classify(fields)
        outputs = _output_fields(system)
        if outputs == ["label"] and "class_cards" in fields:  # DSPy's own adapters: a JSON (or field) answer
            return json.dumps({"label": self._classify(fields)})
        if "classes_for_texts" in outputs:
            return json.dumps({"classes_for_texts": self._relabel(fields)})
        if "texts" in outputs:
            return json.dumps({"texts": self._generate(fields, n)})
        if "descriptions_for_classes" in outputs:
            describe = self.describe or _default_describe
            return json.dumps({"descriptions_for_classes": {
                str(i): describe({**fields, "class_name": name})
                for i, name in enumerate(numbered(fields["classes"]), start=1)}})
        if "description" in outputs:
            return json.dumps({"description": (self.describe or _default_describe)(fields)})
        if "task" in outputs:
            return json.dumps({"task": "The texts are short messages, classified by topic."})
        return json.dumps({name: (self.propose or _default_propose)(name, fields) for name in outputs})

    def _classify(self, fields: dict) -> str:
        """A one-label answer: the rule's class among the candidates, as its code where they carry codes."""
        block = (fields.get("candidates") or "").strip()
        if block in ("", "None", "null"):  # the candidates are the cards (the candidates layout): '- CODE. NAME: ...' or '- NAME: ...'
            coded = candidate_codes(fields["class_cards"])
        else:
            listed = json.loads(block) if block.startswith("[") else block.split(", ")
            coded = [(m.group(1), m.group(2)) if (m := re.match(r"^([A-Z])\. (.+)$", c)) else (None, c)
                     for c in (str(c).strip() for c in listed)]
        label = (self.relabel or _default_relabel)(fields.get("text", ""), [name for _, name in coded])
        return next((code for code, name in coded if name == label and code), label)

    def _relabel(self, fields: dict) -> dict[str, str]:
        candidates = candidate_names(fields["candidate_classes"])
        rule = self.relabel or _default_relabel
        return {str(i): rule(text, candidates) for i, text in enumerate(numbered(fields["texts"]), start=1)}

    def _generate(self, fields: dict, n: int) -> list[str]:
        return (self.generate or _default_generate)(fields, n)


def _default_relabel(text: str, candidates: list[str]) -> str:
    low = text.lower()
    return next((c for c in candidates if c.lower() in low), candidates[0])


_WORDS = ("amber", "basin", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "iris", "juniper", "kelp",
          "lagoon", "meadow", "nickel", "orchid", "pebble", "quartz", "raven", "saffron", "tundra", "umber",
          "violet", "willow", "xenon", "yarrow", "zephyr", "acorn", "birch", "cedar", "delta", "falcon", "glacier")


def distinct_words(tag: str, count: int = 4) -> str:
    """A few words drawn by a hex tag: scripted texts that differ as real texts do, not in one character."""
    digest = hashlib.sha1(tag.encode()).digest()
    return " ".join(_WORDS[b % len(_WORDS)] for b in digest[:count])


def _default_generate(fields: dict, n: int) -> list[str]:
    k = int(fields.get("num_texts", "3"))
    tag = hashlib.sha1(f"{fields}|{n}".encode()).hexdigest()[:6]
    minority = fields.get("minority_class", "none")
    return [f"{i + 1}. a {fields['majority_class']} text mixing {minority}: {distinct_words(f'{tag}-{i}')}"
            for i in range(k)]


def stable_generate(fields: dict, n: int) -> list[str]:
    """Like the default, but the texts depend only on the prompt: the same request always gets the same answer
    (whatever order concurrent calls arrive in), so two runs against a fresh server agree byte for byte."""
    k = int(fields.get("num_texts", "3"))
    tag = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:6]
    minority = fields.get("minority_class", "none")
    return [f"a {fields['majority_class']} text mixing {minority}: {distinct_words(f'{tag}-{i}')}" for i in range(k)]


def _default_propose(name: str, fields: dict) -> str:
    return f"A {name.replace('_', ' ')} written by the scripted LM."


def _default_describe(fields: dict) -> str:
    return f"texts about {fields.get('class_name', 'this class').replace('_', ' ')}"


# ----------------------------------------------------------------------------------------------------------
# In-process engine


class _ScriptedEngine:
    def __init__(self, responder: Responder, requests: list):
        self.responder, self.requests = responder, requests

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages = ([{"role": "system", "content": request.system}] if isinstance(request.system, str) else [])
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        params = {"temperature": request.config.temperature, "max_tokens": request.config.max_tokens}
        self.requests.append({"messages": messages, **params})
        text = self.responder(messages, params)
        if isinstance(text, Fault):
            raise RuntimeError(f"scripted fault: {text}")
        usage = Usage(input_tokens=sum(len(m["content"]) // 4 for m in messages), output_tokens=len(text) // 4)
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=usage)


class _AsyncScriptedEngine:
    def __init__(self, sync: _ScriptedEngine):
        self.sync = sync

    async def complete(self, request):
        return self.sync.complete(request)


class ConcurrencyProbe:
    """Wraps a responder and records the most calls it was answering at once (``most``) and how many it
    answered (``calls``); each call lingers ``hold`` seconds so overlapping requests do overlap."""

    def __init__(self, responder: Responder, hold: float = 0.02):
        self.responder, self.hold = responder, hold
        self.inside = self.most = self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict], params: dict) -> "str | Fault":
        with self._lock:
            self.inside += 1
            self.calls += 1
            self.most = max(self.most, self.inside)
        try:
            time.sleep(self.hold)
            return self.responder(messages, params)
        finally:
            with self._lock:
                self.inside -= 1


def scripted_lm(responder: Responder | None = None, model: str = "openai/scripted"):
    """A dspy.LM answered in-process by ``responder``; ``lm.requests`` lists every request sent."""
    import dspy

    requests: list[dict] = []
    engine = _ScriptedEngine(responder or RuleResponder(), requests)
    lm = dspy.LM(model, engine=engine, async_engine=_AsyncScriptedEngine(engine), cache=False)
    lm.requests = requests
    return lm


# ----------------------------------------------------------------------------------------------------------
# HTTP server


@dataclass
class Fault:
    """An injected failure: an HTTP status (with headers), a delay, a dropped connection or a bad body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    body: str | None = None  # raw body instead of a valid completion (truncated/malformed JSON) or error JSON
    content: str | None = None  # a valid completion whose message content is this (e.g. '' or a bad label)
    # the first answer token's alternatives {token: logprob}, returned in llama.cpp's / OpenAI's shape when the
    # request asks for logprobs (default: the answer's first character with logprob 0)
    top_logprobs: dict[str, float] | None = None


class ScriptedServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 answered by a responder. Context manager.

    It also serves OpenAI's files and batches API in its documented shapes (``POST /v1/files`` multipart,
    ``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``): a batch's lines are answered
    by the same responder when it is created, and it reports ``in_progress`` for ``batch_polls`` retrievals before
    ``completed``. ``batch_fault(custom_id, body)`` may return "fail" (the item goes to the error file) or "expire"
    (the batch ends ``expired`` without it); ``batch_output_hook(text)`` may rewrite an output file (a provider's
    broken file)."""

    def __init__(self, responder: Responder | None = None, model: str = "scripted"):
        self.responder = responder or RuleResponder()
        self.model = model
        self.requests: list[dict] = []
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batch_polls = 1
        self.batch_fault: Callable[[str, dict], str | None] | None = None
        self.batch_output_hook: Callable[[str], str] | None = None
        self.headers: list[dict[str, str]] = []  # the HTTP headers of each request (lower-case names)
        self.connections: set = set()  # open client sockets, closed by an outage
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = self._listen(0)
        self.port = self._server.server_address[1]
        self._closed = False

    def _listen(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def current_headers() -> dict[str, str]:
        """Inside a responder: the HTTP headers of the request it is answering."""
        return getattr(_local, "headers", {})

    def __enter__(self) -> "ScriptedServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closed = True  # a pending outage timer must not bring it back
        self.stop()

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashed server would: new ones are refused."""
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None
            for sock in list(self.connections):
                _close_quietly(sock)

    def start(self) -> None:
        """Listen again on the same port after ``stop`` (a no-op while listening or after the context exits)."""
        with self._lock:
            if self._server is None and not self._closed:
                self._server = self._listen(self.port)

    def outage(self, seconds: float) -> threading.Timer:
        """Refuse connections for ``seconds`` (stop now, start again later); returns the restart timer."""
        self.stop()
        timer = threading.Timer(seconds, self.start)
        timer.daemon = True
        timer.start()
        return timer

    def answer(self, body: dict, record: bool = True) -> tuple[int, dict, bytes | None, float]:
        if record:  # a batch's lines are counted in its request_counts, not here
            self.requests.append(body)
        out = self.responder(body.get("messages", []), body)
        fault = out if isinstance(out, Fault) else Fault(content=out)
        if fault.drop:
            return 0, {}, None, fault.delay
        if fault.status != 200:
            err = {"error": {"message": f"injected {fault.status}", "type": "server_error"}}
            return fault.status, fault.headers, (fault.body or json.dumps(err)).encode(), fault.delay
        payload = fault.body if fault.body is not None else \
            json.dumps(self._completion(body, fault.content or "", fault.top_logprobs))
        return 200, fault.headers, payload.encode(), fault.delay

    # -- files and batches (OpenAI's documented shapes) ------------------------------------------------------
    def upload(self, filename: str, data: bytes, purpose: str) -> dict:
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                   "filename": filename, "purpose": purpose, "status": "processed", "data": data}
        return {k: v for k, v in self.files[file_id].items() if k != "data"}

    def create_batch(self, request: dict) -> dict:
        lines = [json.loads(line) for line in self.files[request["input_file_id"]]["data"].decode().splitlines()
                 if line.strip()]
        out, errors, expired = [], [], False
        for line in lines:
            fault = self.batch_fault(line["custom_id"], line["body"]) if self.batch_fault else None
            if fault == "expire":
                expired = True
                errors.append({"id": f"batch_req_{len(errors)}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed "
                                         "before the completion window expired."}})
                continue
            if fault == "fail":
                errors.append({"id": f"batch_req_{len(errors)}", "custom_id": line["custom_id"],
                               "response": {"status_code": 500, "request_id": "r", "body": {"error": {
                                   "message": "injected failure", "type": "server_error"}}}, "error": None})
                continue
            status, _, payload, _ = self.answer(line["body"], record=False)
            out.append({"id": f"batch_req_{len(out)}", "custom_id": line["custom_id"], "error": None,
                        "response": {"status_code": status, "request_id": f"req-{len(out)}",
                                     "body": json.loads(payload) if payload else None}})
        text = "".join(json.dumps(r) + "\n" for r in out)
        if self.batch_output_hook:
            text = self.batch_output_hook(text)
        output = self.upload("batch_output.jsonl", text.encode(), "batch_output")["id"] if out else None
        error = self.upload("batch_errors.jsonl", "".join(json.dumps(r) + "\n" for r in errors).encode(),
                            "batch_output")["id"] if errors else None
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1}"
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
                "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                "status": "validating", "created_at": int(time.time()), "final": "expired" if expired else "completed",
                "output_file_id": output, "error_file_id": error, "polls": 0,
                "request_counts": {"total": len(lines), "completed": len(out), "failed": len(errors)}}
        return self._batch_view(batch_id, advance=False)

    def create_message_batch(self, request: dict) -> dict:
        """Anthropic's Message Batches (POST /v1/messages/batches): each request's params answered as a chat."""
        results = []
        for item in request["requests"]:
            params = item["params"]
            messages = ([{"role": "system", "content": params["system"]}] if params.get("system") else []) + \
                params["messages"]
            fault = self.batch_fault(item["custom_id"], params) if self.batch_fault else None
            if fault:
                kind = "expired" if fault == "expire" else "errored"
                results.append({"custom_id": item["custom_id"], "result": {"type": kind, **(
                    {"error": {"type": "api_error", "message": "injected"}} if kind == "errored" else {})}})
                continue
            _, _, payload, _ = self.answer({**params, "messages": messages}, record=False)
            completion = json.loads(payload)
            text = completion["choices"][0]["message"]["content"]
            results.append({"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": {
                "id": f"msg_{len(results)}", "type": "message", "role": "assistant", "model": params["model"],
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "usage": {"input_tokens": completion["usage"]["prompt_tokens"],
                          "output_tokens": completion["usage"]["completion_tokens"]}}}})
        with self._lock:
            batch_id = f"msgbatch_{len(self.batches) + 1}"
            counts = {"processing": 0, "succeeded": sum(r["result"]["type"] == "succeeded" for r in results),
                      "errored": sum(r["result"]["type"] == "errored" for r in results),
                      "canceled": 0, "expired": sum(r["result"]["type"] == "expired" for r in results)}
            self.batches[batch_id] = {"id": batch_id, "anthropic": True, "results": results, "counts": counts,
                                      "polls": 0, "request_counts": {"total": len(results)}}
        return self._message_batch_view(batch_id, advance=False)

    def _message_batch_view(self, batch_id: str, advance: bool = True) -> dict:
        batch = self.batches[batch_id]
        batch["polls"] += advance
        ended = batch["polls"] > self.batch_polls
        return {"id": batch_id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
                "request_counts": batch["counts"] if ended else {"processing": len(batch["results"]), "succeeded": 0,
                                                                 "errored": 0, "canceled": 0, "expired": 0},
                "results_url": f"{self.base_url.removesuffix('/v1')}/v1/messages/batches/{batch_id}/results"
                if ended else None, "created_at": "2026-12-04T00:00:00Z", "ended_at": None}

    def _batch_view(self, batch_id: str, advance: bool = True) -> dict:
        batch = self.batches[batch_id]
        if advance:
            batch["polls"] += 1
        done = batch["polls"] > self.batch_polls
        view = {k: v for k, v in batch.items() if k not in ("final", "polls")}
        view["status"] = batch["final"] if done else ("in_progress" if batch["polls"] else "validating")
        if not done:
            view.update(output_file_id=None, error_file_id=None,
                        request_counts={"total": batch["request_counts"]["total"], "completed": 0, "failed": 0})
        return view

    def _completion(self, body: dict, content: str, top: dict[str, float] | None = None) -> dict:
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages", []))
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        if body.get("logprobs") and content:
            choice["logprobs"] = scripted_logprobs(content, top, body.get("top_logprobs") or 1)
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model,
                "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4,
                          "total_tokens": prompt_tokens + len(content) // 4}}


def scripted_logprobs(content: str, top: dict[str, float] | None, k: int) -> dict:
    """OpenAI's (and llama.cpp's server's) logprobs shape for an answer: the first token is the answer's first
    character (or the most likely of ``top``), then the rest of the answer as one token."""
    top = top or {content[:1]: 0.0}
    ranked = sorted(top.items(), key=lambda kv: -kv[1])[:k]
    first, rest = content[:1], content[1:]

    def entry(token: str, logprob: float, alternatives: list[tuple[str, float]]) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode()),
                "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alternatives]}
    content_entries = [entry(first, top.get(first, ranked[0][1]), ranked)]
    if rest:
        content_entries.append(entry(rest, 0.0, [(rest, 0.0)]))
    return {"content": content_entries}


def _make_handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def setup(self) -> None:
            super().setup()
            server.connections.add(self.connection)

        def finish(self) -> None:
            server.connections.discard(self.connection)
            try:
                super().finish()
            except OSError:  # the client or an outage closed the connection first
                pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if m := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
                file = server.files.get(m.group(1))
                return self._send(200, {}, file["data"]) if file else self._not_found()
            if m := re.fullmatch(r"/v1/messages/batches/([\w-]+)/results", path):
                batch = server.batches.get(m.group(1))
                return self._send(200, {}, "".join(json.dumps(r) + "\n" for r in batch["results"]).encode()) \
                    if batch else self._not_found()
            if m := re.fullmatch(r"/v1/messages/batches/([\w-]+)", path):
                ok = m.group(1) in server.batches
                return self._send(200, {}, json.dumps(server._message_batch_view(m.group(1))).encode()) if ok else \
                    self._not_found()
            if m := re.fullmatch(r"/v1/batches/([\w-]+)", path):
                ok = m.group(1) in server.batches
                return self._send(200, {}, json.dumps(server._batch_view(m.group(1))).encode()) if ok else \
                    self._not_found()
            self._send(200, {}, json.dumps({"object": "list", "data": [{"id": server.model}]}).encode())

        def _not_found(self) -> None:
            self._send(404, {}, json.dumps({"error": {"message": "not found", "type": "invalid_request_error"}}).encode())

        def do_POST(self) -> None:
            _local.headers = {k.lower(): v for k, v in self.headers.items()}
            server.headers.append(_local.headers)
            path = self.path.split("?")[0].rstrip("/")
            try:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if path == "/v1/files":
                    return self._send(200, {}, json.dumps(server.upload(*_multipart_file(self.headers, raw))).encode())
                body = json.loads(raw or b"{}")
            except OSError:  # an outage cut the connection while the request was arriving
                self.close_connection = True
                return
            if path == "/v1/batches":
                return self._send(200, {}, json.dumps(server.create_batch(body)).encode())
            if path == "/v1/messages/batches":
                return self._send(200, {}, json.dumps(server.create_message_batch(body)).encode())
            try:
                status, headers, payload, delay = server.answer(body)
            except Exception as exc:  # a broken responder is a 500, not a hung client
                status, headers, payload, delay = 500, {}, json.dumps({"error": {"message": repr(exc)}}).encode(), 0
            time.sleep(delay)
            if status == 0:  # drop the connection without answering
                self.close_connection = True
                _close_quietly(self.connection)
                return
            try:
                self._send(status, headers, payload or b"")
            except OSError:  # the client gave up (its timeout) or an outage cut the connection
                self.close_connection = True

        def _send(self, status: int, headers: dict, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def _multipart_file(headers: Any, raw: bytes) -> tuple[str, bytes, str]:
    """(filename, data, purpose) of a multipart/form-data file upload (the openai client's create_file)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + raw)
    filename, data, purpose = "upload.jsonl", b"", "batch"
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "file":
            filename, data = part.get_filename() or filename, part.get_payload(decode=True)
        elif name == "purpose":
            purpose = part.get_payload(decode=True).decode()
    return filename, data, purpose


def _close_quietly(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
