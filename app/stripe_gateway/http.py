"""stripe-python's HTTPX client, logging each call with Stripe's request id.

Stripe's request id (`req_...`) is what Stripe's dashboard and support find a call by; the
line also carries our request id and customer from the log context, so one search leads
from a dashboard request to the Stripe calls it made. The path only: a GET's query string
can hold a customer's email.
"""

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import stripe
import structlog

logger = structlog.get_logger(__name__)


class LoggedHTTPXClient(stripe.HTTPXClient):
    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        started = time.perf_counter()
        content, status, response_headers = await super().request_async(
            method, url, headers, post_data
        )
        logger.info(
            "stripe_request",
            method=method.upper(),
            path=urlsplit(url).path,
            status=status,
            stripe_request_id=response_headers.get("request-id"),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return content, status, response_headers
