"""Mounting the console on the API app: sqladmin at /admin, its own statics (no CDN), our
sign-in, CSRF check and views."""

import secrets
from pathlib import Path

import structlog
from fastapi import FastAPI
from sqladmin import Admin
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.console.auth import BASE_PATH, ConsoleAuthentication, sign_in_with_link
from app.console.catalog_views import AddOnView, PlanView
from app.console.context import ConsoleContext
from app.console.csrf import csrf_token
from app.console.drift_view import DriftView
from app.console.views import (
    BillingHistoryView,
    ConsoleAuditView,
    CustomerView,
    NotificationView,
    OperatorAlertView,
    OverageChargeView,
    StripeEventView,
    SubscriptionView,
    UsagePeriodView,
)
from app.core.config import Settings

logger = structlog.get_logger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
TITLE = "Billing console"

VIEWS = (
    PlanView,
    AddOnView,
    CustomerView,
    SubscriptionView,
    BillingHistoryView,
    UsagePeriodView,
    OverageChargeView,
    StripeEventView,
    NotificationView,
    OperatorAlertView,
    DriftView,
    ConsoleAuditView,
)


def mount_console(api: FastAPI, settings: Settings) -> None:
    """Mount the console at /admin/; its views read through sessions bound at start-up
    (`bind_console`), when the engine exists."""
    secret = settings.CONSOLE_SESSION_SECRET
    if secret is None and settings.ENVIRONMENT == "production":
        # A key made per process would sign a worker's sessions that its siblings refuse.
        logger.warning("console_not_mounted", reason="CONSOLE_SESSION_SECRET is not set")
        return
    key = secret.get_secret_value() if secret else secrets.token_urlsafe(32)
    # Unbound until start-up; sqladmin's own list and detail pages read through it.
    read_sessions = async_sessionmaker(class_=AsyncSession, expire_on_commit=False)
    admin = Admin(
        api,
        session_maker=read_sessions,
        base_url=BASE_PATH,
        title=TITLE,
        templates_dir=str(TEMPLATES),
        authentication_backend=ConsoleAuthentication(settings, key),
    )
    admin.admin.state.console = ConsoleContext(api)
    admin.admin.state.console_templates = admin.templates
    admin.templates.env.globals["csrf_token"] = csrf_token
    for view in VIEWS:
        admin.add_view(view)

    async def sign_in_link(request: Request) -> Response:
        # The secret travels after the `#` of the printed link, which a browser never sends:
        # the page's script moves it into the form's body, so it is in no URL a server or a
        # proxy logs.
        context: dict[str, object] = {"post_url": request.url_for("admin:link")}
        status_code = 200
        if request.method == "POST":
            form = await request.form()
            secret_part = form.get("secret")
            refusal = await sign_in_with_link(
                request, secret_part if isinstance(secret_part, str) else ""
            )
            if refusal is None:
                return RedirectResponse(request.url_for("admin:index"), status_code=303)
            context["error"] = refusal.message
            status_code = refusal.status_code
        response: Response = await admin.templates.TemplateResponse(
            request, "console/link.html", context, status_code=status_code
        )
        return response

    admin.admin.add_route("/link", sign_in_link, methods=["GET", "POST"], name="link")

    async def to_console(request: Request) -> Response:
        return RedirectResponse(f"{BASE_PATH}/", status_code=307)

    api.add_route(BASE_PATH, to_console, include_in_schema=False)
    api.state.console_read_sessions = read_sessions


def bind_console(api: FastAPI, engine: AsyncEngine) -> None:
    """At start-up: the console's pages read with autocommitted statements, like the API's
    read-only routes (no transaction held while a page renders)."""
    read_sessions: async_sessionmaker[AsyncSession] | None = getattr(
        api.state, "console_read_sessions", None
    )
    if read_sessions is not None:
        read_sessions.configure(bind=engine.execution_options(isolation_level="AUTOCOMMIT"))
