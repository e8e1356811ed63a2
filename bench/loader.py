"""The bench's load generator, run as its own process: `python -m bench.loader < plan.json`.

Closed loop at a fixed concurrency, one keep-alive HTTP/1.1 connection per worker: each
worker sends its next request when the previous answer has been read. The client is asyncio's
transport with httptools (the C parser uvicorn uses) reading the answers: on a machine with two
cores the loader shares the CPU with the server, and a full client library (aiohttp costs
about 140 µs of CPU a request here) would make the bench measure the loader. The first `warmup`
requests are sent and not timed. The plan comes as JSON on stdin, the result goes as JSON to
stdout: requests timed, seconds, rate, latency percentiles, and the answers that were not 2xx.

Request bodies are templates, filled per request so every call is new to the service:
`{{uuid}}` is a fresh hex id at each occurrence, `{{now}}` the current UTC time (ISO 8601),
and `{{name}}` for a name listed in the plan's `choices` one of its values, drawn per request
(in the path and the body alike). `header_sets`, when given, are used in turn, one per request
(distinct users' tokens, say). The timed phase sends `requests` requests, or as many as fit
in `seconds`.
A template with `stripe_webhook_secret` gets a `Stripe-Signature` header over its filled body,
signed now, the way Stripe signs a delivery.
"""

import asyncio
import hashlib
import hmac
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

UUID_MARK = "{{uuid}}"
NOW_MARK = "{{now}}"


class Template:
    def __init__(self, spec: dict[str, Any], choices: dict[str, list[str]]) -> None:
        self.method: str = spec["method"]
        self.path: str = spec["path"]
        self.headers: dict[str, str] = spec.get("headers", {})
        self.weight: float = spec.get("weight", 1)
        self.webhook_secret: str | None = spec.get("stripe_webhook_secret")
        self.choices: dict[str, list[str]] = choices
        self.header_sets: Iterator[dict[str, str]] | None = (
            iter(spec["header_sets"]) if "header_sets" in spec else None
        )
        body: str | None = spec.get("body")
        self.parts = body.split(UUID_MARK) if body is not None else None

    def _choose(self, text: str, chooser: random.Random) -> str:
        for name, values in self.choices.items():
            mark = "{{" + name + "}}"
            if mark in text:
                text = text.replace(mark, chooser.choice(values))
        return text

    def request(self, chooser: random.Random) -> tuple[str, str, bytes | None, dict[str, str]]:
        headers = self.headers
        if self.header_sets is not None:
            headers = {**headers, **next(self.header_sets)}
        path = self._choose(self.path, chooser)
        if self.parts is None:
            return self.method, path, None, headers
        filled = self.parts[0]
        for part in self.parts[1:]:
            filled += uuid.uuid4().hex + part
        if NOW_MARK in filled:
            filled = filled.replace(NOW_MARK, datetime.now(UTC).isoformat())
        body = self._choose(filled, chooser).encode()
        if self.webhook_secret is not None:
            signed_at = int(time.time())
            digest = hmac.new(
                self.webhook_secret.encode(), f"{signed_at}.".encode() + body, hashlib.sha256
            ).hexdigest()
            headers = {**headers, "Stripe-Signature": f"t={signed_at},v1={digest}"}
        return self.method, path, body, headers


class Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange` sends a request and waits for its whole answer."""

    def __init__(self, host: str) -> None:
        self.host = host.encode()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answered: asyncio.Future[int] | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_exception(exc or ConnectionError("the server closed the connection"))

    # httptools callbacks: a piece of the answer's body; the whole answer has been read.
    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(self.parser.get_status_code())

    async def exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> int:
        assert self.transport is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host.decode()}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.answered = asyncio.get_running_loop().create_future()
        self.body = []
        self.transport.write(head + body if body else head)
        return await self.answered


def _error_code(body: list[bytes]) -> str:
    """The error envelope's code, to tell apart failures of one status."""
    try:
        return str(json.loads(b"".join(body))["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    templates = [Template(spec, plan.get("choices", {})) for spec in plan["templates"]]
    weights = [template.weight for template in templates]
    concurrency: int = plan["concurrency"]
    warmup: int = plan.get("warmup", 0)
    chooser = random.Random(plan.get("seed", 1))  # noqa: S311 (a load mix, not a secret)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    address = urlsplit(plan["url"])
    host, port = address.hostname or "127.0.0.1", address.port or 80
    timeout = plan.get("timeout", 600)

    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(concurrency):
        _, connection = await loop.create_connection(lambda: Connection(address.netloc), host, port)
        connections.append(connection)

    async def phase(count: int, timed: bool, seconds: float | None = None) -> float:
        remaining = count
        deadline = math.inf if seconds is None else time.perf_counter() + seconds

        async def worker(connection: Connection) -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                template = chooser.choices(templates, weights)[0]
                method, path, body, headers = template.request(chooser)
                started = time.perf_counter()
                status = await connection.exchange(method, path, body, headers)
                if timed:
                    latencies.append(time.perf_counter() - started)
                if status >= 300:
                    key = f"{method} {path.split('?')[0]} {status} {_error_code(connection.body)}"
                    failures[key] = failures.get(key, 0) + 1

        started = time.perf_counter()
        # One deadline for the phase rather than one per request (a timer each costs).
        await asyncio.wait_for(
            asyncio.gather(*(worker(connection) for connection in connections)), timeout
        )
        return time.perf_counter() - started

    try:
        # The warm-up opens every connection and fills the service's caches; untimed.
        await phase(warmup, timed=False)
        # A fixed count (the mixed load), or as many as `seconds` allow (every path alike,
        # whatever its rate, so a slow path does not make the bench slow).
        elapsed = await phase(
            plan.get("requests", 1 << 62), timed=True, seconds=plan.get("seconds")
        )
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()

    latencies.sort()

    def percentile(share: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "failures": failures,
    }


def main() -> None:
    plan = json.load(sys.stdin)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover (uvloop comes with uvicorn[standard])
        pass
    result = asyncio.run(run(plan))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
