"""`Idempotency-Key` on POST requests: the same key with the same body gets the first answer.

- Scope: the caller (the token's user id), the method, the path and the query string, so two
  users' keys never collide and one key sent to two endpoints is two requests. The request
  part is stored as its SHA-256: a path of any length or content fits the column.
- A key is 1-255 printable ASCII characters (422 `idempotency_key_invalid` otherwise); a body
  over the size limit is 413 before anything is claimed.
- Kept 24 hours. The same key with a different body is 422 `idempotency_key_reused`; while the
  first request still runs, 409 `request_in_progress`.
- Only answers below 500 are kept: after a server error or Stripe outage the retry runs again
  (and reaches Stripe with the same idempotency keys of its own).
"""

import hashlib
import json
import re
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.auth import decode_access_token
from app.core.clock import Clock
from app.core.config import Settings
from app.core.errors import AppError, error_response
from app.idempotency import repository

logger = structlog.get_logger(__name__)

KEY_LIFETIME = timedelta(hours=24)
# A request that claimed a key and then died stops blocking it after this.
IN_PROGRESS_LEASE = timedelta(minutes=5)
MAX_KEY_LENGTH = 255
_VALID_KEY = re.compile(f"[\\x20-\\x7e]{{1,{MAX_KEY_LENGTH}}}")


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        caller = self._caller(headers, state.settings, state.clock)
        if caller is None:
            # No valid token: the route answers 401 on its own; nothing to remember.
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.fullmatch(key):
            await error_response(
                422,
                "idempotency_key_invalid",
                f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
            )(scope, receive, send)
            return

        try:
            body = await _read_body(receive)
        except HTTPException as error:
            # The body size limit (BodySizeLimitMiddleware) stops a streamed body mid-way.
            await error_response(error.status_code, "payload_too_large", str(error.detail))(
                scope, receive, send
            )
            return
        key_scope = _key_scope(caller, scope)
        fingerprint = hashlib.sha256(body).hexdigest()
        sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
        clock: Clock = state.clock
        replay = await self._claim_or_replay(sessionmaker, clock, key_scope, key, fingerprint)
        if replay is not None:
            await replay(scope, _replaying(body), send)
            return

        captured = _CapturedResponse(send)
        try:
            await self.app(scope, _replaying(body), captured.send)
        finally:
            async with sessionmaker.begin() as session:
                if (
                    captured.status is not None
                    and captured.status < 500
                    # A rate-limited request did nothing: its retry must run, not replay a 429.
                    and captured.status != 429
                    and captured.json is not None
                ):
                    await repository.complete(
                        session,
                        scope=key_scope,
                        key=key,
                        status=captured.status,
                        body=captured.json,
                    )
                else:
                    await repository.forget(session, scope=key_scope, key=key)

    @staticmethod
    def _caller(headers: Headers, settings: Settings, clock: Clock) -> str | None:
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return decode_access_token(token, settings, clock.now()).user_id
        except AppError:
            return None

    @staticmethod
    async def _claim_or_replay(
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        key_scope: str,
        key: str,
        fingerprint: str,
    ) -> JSONResponse | None:
        now = clock.now()

        async def claim(session: AsyncSession) -> bool:
            return await repository.claim(
                session,
                scope=key_scope,
                key=key,
                request_fingerprint=fingerprint,
                now=now,
                locked_until=now + IN_PROGRESS_LEASE,
                expires_at=now + KEY_LIFETIME,
            )

        async with sessionmaker.begin() as session:
            if await claim(session):
                return None
            record = await repository.get_for_update(session, scope=key_scope, key=key)
            if record is None:  # deleted between the two statements: treat as new
                return await IdempotencyMiddleware._claim_or_replay(
                    sessionmaker, clock, key_scope, key, fingerprint
                )
            if record.expires_at <= now:
                await repository.forget(session, scope=key_scope, key=key)
                await claim(session)
                return None
            if record.request_fingerprint != fingerprint:
                return error_response(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with a different request.",
                )
            if record.state == "in_progress":
                if record.locked_until > now:
                    return error_response(
                        409,
                        "request_in_progress",
                        "The first request with this Idempotency-Key is still running.",
                        headers={"Retry-After": "1"},
                    )
                record.locked_until = now + IN_PROGRESS_LEASE
                return None
            assert record.response_status is not None
            return JSONResponse(
                status_code=record.response_status,
                content=record.response_body,
                headers={"Idempotent-Replayed": "true"},
            )


def _key_scope(caller: str, scope: Scope) -> str:
    # The path without its trailing slash: both forms are one route (SlashTolerantRouter).
    request = b"\n".join(
        [
            scope["method"].encode(),
            scope["path"].rstrip("/").encode("utf-8", "surrogateescape"),
            scope.get("query_string", b""),
        ]
    )
    return f"{caller}:{hashlib.sha256(request).hexdigest()}"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class _CapturedResponse:
    """Passes the response through while keeping its status and JSON body."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None
        self._chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body":
            self._chunks.append(message.get("body", b""))
        await self._send(message)

    @property
    def json(self) -> dict[str, Any] | None:
        try:
            parsed = json.loads(b"".join(self._chunks) or b"null")
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
