"""The bench's load generator, run as its own process: `python -m bench.loader < plan.json`.

Closed loop at a fixed concurrency with aiohttp (one keep-alive connection per worker): each
worker sends its next request when the previous answer has been read. The first `warmup`
requests are sent and not timed. The plan comes as JSON on stdin, the result goes as JSON to
stdout: requests timed, seconds, rate, latency percentiles, and the answers that were not 2xx.

Request bodies are templates, filled per request so every call is new to the service:
`{{uuid}}` is a fresh hex id at each occurrence, `{{now}}` the current UTC time (ISO 8601),
and `{{name}}` for a name listed in the plan's `choices` one of its values, drawn per request
(in the path and the body alike). `header_sets`, when given, are used in turn, one per request
(distinct users' tokens, say).
A template with `stripe_webhook_secret` gets a `Stripe-Signature` header over its filled body,
signed now, the way Stripe signs a delivery.
"""

import asyncio
import hashlib
import hmac
import json
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp

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


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    templates = [Template(spec, plan.get("choices", {})) for spec in plan["templates"]]
    weights = [template.weight for template in templates]
    concurrency: int = plan["concurrency"]
    warmup: int = plan.get("warmup", 0)
    total: int = plan["requests"]
    chooser = random.Random(plan.get("seed", 1))  # noqa: S311 (a load mix, not a secret)
    latencies: list[float] = []
    failures: dict[str, int] = {}

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=plan.get("timeout", 60))
    async with aiohttp.ClientSession(
        base_url=plan["url"], connector=connector, timeout=timeout
    ) as session:

        async def phase(count: int, timed: bool) -> float:
            remaining = count

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    template = chooser.choices(templates, weights)[0]
                    method, path, body, headers = template.request(chooser)
                    started = time.perf_counter()
                    async with session.request(method, path, data=body, headers=headers) as answer:
                        await answer.read()
                        status = answer.status
                    if timed:
                        latencies.append(time.perf_counter() - started)
                    if status >= 300:
                        key = f"{method} {path.split('?')[0]} {status}"
                        failures[key] = failures.get(key, 0) + 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started

        # The warm-up opens every connection and fills the service's caches; untimed.
        await phase(warmup, timed=False)
        elapsed = await phase(total, timed=True)

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
