"""A dispatching reverse proxy: one public port in front of N single-slot llama.cpp servers.

llama-cpp-python's server answers one request at a time (it holds a lock around the model), so "N requests in
flight" means N worker processes. The proxy keeps a queue of idle workers and hands each request to one of them,
forwarding method, path, headers (minus hop-by-hop ones) and the body untouched, and relaying the response as it
arrives, so streamed answers (text/event-stream) stay streamed. Run it as
``python -m promptmix_dspy.llm.proxy --port P --upstream http://127.0.0.1:P1 --upstream http://127.0.0.1:P2``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

import httpx

__all__ = ["DispatchProxy", "WORKER_HEADER", "main"]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WORKER_HEADER = "x-promptmix-worker"  # which worker answered: handy in tests and when debugging
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length"})


def _forwardable(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.decode("latin-1").lower() not in HOP_BY_HOP]


def _response_headers(resp: httpx.Response, worker: int) -> list[tuple[bytes, bytes]]:
    # Keep content-length here: the body is relayed raw (still encoded), byte for byte.
    dropped = HOP_BY_HOP - {"content-length"}
    headers = [(k, v) for k, v in resp.headers.raw if k.decode("latin-1").lower() not in dropped]
    return headers + [(WORKER_HEADER.encode(), str(worker).encode())]


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away before sending its request body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"error": {"message": detail, "type": "proxy_error", "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class DispatchProxy:
    """An ASGI app that gives each request to an idle upstream server, waiting in line when all are busy."""

    def __init__(self, upstreams: list[str]) -> None:
        if not upstreams:
            raise ValueError("DispatchProxy needs at least one upstream URL, got none")
        self.upstreams = [u.rstrip("/") for u in upstreams]
        self._idle: asyncio.Queue[int] | None = None
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._handle(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _startup(self) -> None:
        self._idle = asyncio.Queue()
        for worker in range(len(self.upstreams)):
            self._idle.put_nowait(worker)
        # No read timeout: a long generation is the caller's business, and the caller has its own timeout.
        timeout = httpx.Timeout(None, connect=10.0)
        self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=64))

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._idle is None:
            self._startup()
        try:
            body = await _read_body(receive)
        except ConnectionResetError:
            return
        worker = await self._idle.get()
        try:
            await self._relay_until_disconnect(worker, scope, body, receive, send)
        finally:
            self._idle.put_nowait(worker)

    async def _relay_until_disconnect(self, worker: int, scope: Scope, body: bytes, receive: Receive,
                                      send: Send) -> None:
        # If the client hangs up, drop the upstream connection too, so llama.cpp stops generating for nobody.
        relay = asyncio.ensure_future(self._relay(worker, scope, body, send))
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        done, pending = await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if relay in done:
            relay.result()

    async def _relay(self, worker: int, scope: Scope, body: bytes, send: Send) -> None:
        url = self.upstreams[worker] + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self._client.build_request(scope["method"], url, headers=_forwardable(scope["headers"]),
                                             content=body)
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning("worker %d (%s) failed: %r", worker, self.upstreams[worker], exc)
            await _send_error(send, 502, f"upstream llama.cpp worker {worker} failed: {exc!r}")
            return
        try:
            await send({"type": "http.response.start", "status": resp.status_code,
                        "headers": _response_headers(resp, worker)})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await resp.aclose()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True, help="base URL of a worker; repeat")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(DispatchProxy(args.upstream), host=args.host, port=args.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
