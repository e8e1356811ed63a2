"""CSRF protection for every console form post: a token kept in the signed session and
echoed by each form (a hidden `csrf_token` field) or by script (`X-CSRF-Token`).

A forged post from another site has the session cookie only when SameSite lets it through,
and never the token, which it cannot read: it is refused before any view runs.
"""

import hmac
import secrets

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(request: Request) -> str:
    """The session's token, made on first use (the sign-in form included)."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = token
    return token


def new_csrf_token(request: Request) -> None:
    """A fresh token: at sign-in, so a token planted before it is worth nothing after."""
    request.session[SESSION_KEY] = secrets.token_urlsafe(32)


class CsrfMiddleware:
    """Refuses an unsafe request whose token is missing or wrong, with 403. Runs inside the
    session middleware (it reads the session) and reads the body once, handing it on.

    It runs before sign-in, so whatever body anyone sends is read here: one over `max_bytes`
    is refused with 413, and one that is no readable form with 400, never a 500 (this is
    outside the console's error pages, which only wrap its views)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            try:
                message = await receive()
            except HTTPException as error:
                # The API's body limit counts a body sent without Content-Length as it
                # arrives, and raises when it is over.
                await _refusal(error.status_code, _TOO_LARGE)(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _refusal(413, _TOO_LARGE)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        request = Request(scope, replay)
        expected = request.session.get(SESSION_KEY)
        try:
            # Parsed even when the token comes in the header: the view parses the same
            # body, and a broken one must be refused here, not fail there.
            form = await request.form()
        except (HTTPException, MultiPartException, KeyError, ValueError):
            await _refusal(400, _UNREADABLE)(scope, replay, send)
            return
        value = form.get(FORM_FIELD)
        await form.close()
        submitted = request.headers.get(HEADER)
        if submitted is None:
            submitted = value if isinstance(value, str) else None
        if not (
            isinstance(expected, str)
            and submitted is not None
            and hmac.compare_digest(expected.encode(), submitted.encode())
        ):
            await _refusal(403, _FORGED)(scope, replay, send)
            return

        # The body was read here; the view reads it again from this replay.
        await self.app(scope, _replay_once(bytes(body), receive), send)


_FORGED = (
    "This form was not sent from the console page it belongs to (its CSRF token is missing "
    "or out of date). Reload the page and try again."
)
_TOO_LARGE = "This form is larger than the console accepts."
_UNREADABLE = "This form could not be read. Reload the page and try again."


def _refusal(status_code: int, message: str) -> HTMLResponse:
    return HTMLResponse(f"<h1>Refused</h1><p>{message}</p>", status_code=status_code)


def _replay_once(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
