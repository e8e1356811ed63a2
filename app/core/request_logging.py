"""The request id, the one log line of every request, and its duration in the metrics.

The id is the caller's `X-Request-ID` when it is a sane value (the dashboard or a proxy
already logged it), else a new one; it is sent back in `X-Request-ID` and bound in
structlog's context, so every line logged while the request runs carries it, and the jobs
it enqueues carry it on (`app.jobs.enqueue`). The dependencies that know the caller bind
`user_id` and `customer_id` the same way.
"""

import logging
import random
import re
import time
from typing import Final

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import HTTP_REQUEST_DURATION
from app.core.routing import route_template

REQUEST_ID_HEADER: Final = "X-Request-ID"
_REQUEST_ID_NAME: Final = REQUEST_ID_HEADER.lower().encode()
# Bounded and plain: the value is written into every log line and echoed in a header, so a
# caller must not be able to inject line breaks, quotes or a megabyte of text.
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")

logger = structlog.get_logger(__name__)
_stdlib_logger = logging.getLogger(__name__)


def accepted_request_id(header_value: str | None) -> str:
    """The caller's request id when it is sane, else a new one."""
    if header_value is not None and _SANE_REQUEST_ID.fullmatch(header_value):
        return header_value
    # An identifier, not a secret: Python's generator (seeded from the OS, and again in a
    # forked child) instead of the OS's randomness, a system call on every request.
    return f"{random.getrandbits(128):032x}"


class RequestLoggingMiddleware:
    """Outermost: binds the request id, then once the request is answered writes its log line
    and observes its duration by method, route template and status (the router records the
    matched route in the scope, the same dict this middleware holds). One layer does both, as
    both need the same status and timing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        started = time.perf_counter()
        status = 500
        answered = False
        finished: float | None = None

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, finished, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                # Replaces one the answer may carry already (a replayed idempotent answer).
                message["headers"] = [
                    *(
                        header
                        for header in message.get("headers", ())
                        if header[0].lower() != _REQUEST_ID_NAME
                    ),
                    (_REQUEST_ID_NAME, request_id.encode()),
                ]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = time.perf_counter()
            await send(message)

        # The request's own context: nothing bound by an earlier request in this task leaks
        # in, and what this one binds (its customer) is gone once it is answered.
        outer_context = structlog.contextvars.get_contextvars()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            # The server answers an escaped error with a 500 (`status` unless one started).
            answered = True
            raise
        finally:
            duration = (finished or time.perf_counter()) - started
            # Not answered: cancelled (the client went away) before any answer; nothing to
            # observe.
            if answered:
                HTTP_REQUEST_DURATION.labels(
                    scope["method"], route_template(scope), str(status)
                ).observe(duration)
            # The line's fields are gathered only when INFO is logged at all.
            if _stdlib_logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                logger.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round(duration * 1000, 1),
                    client_ip=client[0] if client else None,
                )
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**outer_context)
