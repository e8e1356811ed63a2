"""Signing in to the console: a `billing_admin` access token pasted once into the sign-in
form (verified by the API's own `decode_access_token`), or a one-time link from `billing
console-link`. Either starts a session in a signed, HTTP-only, SameSite=Strict cookie
(`Secure` in production) that ends CONSOLE_SESSION_MINUTES after sign-in."""

from datetime import timedelta
from typing import Any, Literal

import structlog
from sqladmin.authentication import AuthenticationBackend
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response

from app.console import service
from app.console.context import console_context
from app.console.csrf import CsrfMiddleware, new_csrf_token
from app.core.auth import ROLE_BILLING_ADMIN, decode_access_token
from app.core.config import Settings
from app.core.errors import Unauthorized
from app.core.rate_limits import RateLimit, RateLimited, client_ip

logger = structlog.get_logger(__name__)

SESSION_COOKIE = "billing_console"
OPERATOR_KEY = "operator"
BASE_PATH = "/admin"


class SignInRefused(Exception):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class ConsoleAuthentication(AuthenticationBackend):
    def __init__(self, settings: Settings, secret_key: str) -> None:
        # Not the base class's __init__: our cookie's name, path, lifetime and flags.
        self.middlewares = [
            Middleware(
                SessionMiddleware,
                secret_key=secret_key,
                session_cookie=SESSION_COOKIE,
                # The signed cookie itself stops being accepted after this (its timestamp is
                # signed); the session's own end is checked against the clock as well.
                max_age=settings.CONSOLE_SESSION_MINUTES * 60,
                path=BASE_PATH,
                same_site="strict",
                https_only=settings.ENVIRONMENT == "production",
            ),
            Middleware(CsrfMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES),
        ]

    async def login(self, request: Request) -> Response | bool:
        form = await request.form()
        token = form.get("token")
        try:
            await _limit_sign_ins(request)
            if not isinstance(token, str) or not token.strip():
                raise SignInRefused("Paste an access token.", 400)
            context = console_context(request)
            try:
                principal = decode_access_token(
                    token.strip(), context.settings, context.clock.now()
                )
            except Unauthorized as error:
                raise SignInRefused(error.detail_message, 401) from None
            if not principal.is_billing_admin:
                raise SignInRefused(f"This token has no `{ROLE_BILLING_ADMIN}` role.", 403)
        except SignInRefused as refusal:
            return await _sign_in_page(request, refusal)
        await start_session(request, user_id=principal.user_id, via="token")
        return True

    async def logout(self, request: Request) -> Response | bool:
        operator = current_operator(request)
        request.session.clear()
        if operator is not None:
            context = console_context(request)
            async with context.sessionmaker.begin() as session:
                await service.record_action(
                    session,
                    actor_user_id=operator,
                    action="console.sign_out",
                    target="console",
                    now=context.clock.now(),
                    details={"ip": client_ip(request)},
                )
            logger.info("console_sign_out", user_id=operator)
        return True

    async def authenticate(self, request: Request) -> Response | bool:
        return current_operator(request) is not None

    async def get_user_id(self, request: Request) -> Any:
        return current_operator(request)


def current_operator(request: Request) -> str | None:
    """The signed-in operator's user id, or None (never signed in, or the session ended)."""
    operator = request.session.get(OPERATOR_KEY)
    if not isinstance(operator, dict):
        return None
    now = console_context(request).clock.now().timestamp()
    if not isinstance(operator.get("ends_at"), int | float) or now >= operator["ends_at"]:
        request.session.pop(OPERATOR_KEY, None)
        return None
    user_id = operator.get("user_id")
    return user_id if isinstance(user_id, str) else None


async def start_session(request: Request, *, user_id: str, via: Literal["token", "link"]) -> None:
    """Sign `user_id` in: a new session (nothing carried over from before sign-in, the CSRF
    token included), ending CONSOLE_SESSION_MINUTES from now; the sign-in is audited."""
    context = console_context(request)
    now = context.clock.now()
    ends_at = now + timedelta(minutes=context.settings.CONSOLE_SESSION_MINUTES)
    request.session.clear()
    new_csrf_token(request)
    request.session[OPERATOR_KEY] = {"user_id": user_id, "ends_at": ends_at.timestamp()}
    async with context.sessionmaker.begin() as session:
        await service.record_action(
            session,
            actor_user_id=user_id,
            action="console.sign_in",
            target="console",
            now=now,
            details={"via": via, "ip": client_ip(request)},
        )
    logger.info("console_sign_in", user_id=user_id, via=via)


async def _limit_sign_ins(request: Request) -> None:
    try:
        await console_context(request).rate_limiter.hit(
            RateLimit.CONSOLE_SIGN_IN_IP, client_ip(request)
        )
    except RateLimited as error:
        raise SignInRefused(error.detail_message, 429) from None


async def _sign_in_page(request: Request, refusal: SignInRefused) -> Response:
    templates = request.app.state.console_templates
    response: Response = await templates.TemplateResponse(
        request,
        "sqladmin/login.html",
        {"error": refusal.message},
        status_code=refusal.status_code,
    )
    return response


async def sign_in_with_link(request: Request, secret: str) -> SignInRefused | None:
    """Use a one-time link: None when it signed the operator in."""
    try:
        await _limit_sign_ins(request)
    except SignInRefused as refusal:
        return refusal
    context = console_context(request)
    if not secret or len(secret) > 128:
        return SignInRefused("This sign-in link is incomplete: copy all of it.", 400)
    async with context.sessionmaker.begin() as session:
        user_id = await service.use_sign_in_link(session, secret=secret, now=context.clock.now())
    if user_id is None:
        return SignInRefused(
            "This sign-in link is unknown, used already or expired: run "
            "`billing console-link` for a new one.",
            403,
        )
    await start_session(request, user_id=user_id, via="link")
    return None


__all__ = ["ConsoleAuthentication", "current_operator", "sign_in_with_link", "start_session"]
