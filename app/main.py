"""The API process: `uvicorn app.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app.alerts.router import router as alerts_router
from app.billing_history.router import router as billing_history_router
from app.console.admin import bind_console, mount_console
from app.core.body_limit import BodySizeLimitMiddleware
from app.core.clock import Clock, SystemClock
from app.core.config import ConfigurationError, Settings, get_settings, refuse_to_start
from app.core.db import (
    create_driver_pool,
    create_engine,
    create_read_sessionmaker,
    create_sessionmaker,
)
from app.core.docs_pages import DocsContentPolicyMiddleware
from app.core.errors import error_responses, install_error_handlers
from app.core.garbage_collection import tune_for_serving
from app.core.hot_routes import HotRoutes
from app.core.logging import configure_logging
from app.core.rate_limits import (
    PER_CALLER,
    PUBLIC_PER_IP,
    WEBHOOK_PER_IP,
    RateLimited,
    RequestRateLimiter,
    create_rate_limiter,
)
from app.core.request_logging import RequestLoggingMiddleware
from app.core.routing import TrailingSlashMiddleware
from app.core.unexpected_errors import UnexpectedErrorMiddleware
from app.customers.router import router as customers_router
from app.health.router import router as health_router
from app.idempotency.middleware import IdempotencyMiddleware
from app.invoices.branding import default_branding
from app.invoices.router import admin_router as invoices_admin_router
from app.invoices.router import router as invoices_router
from app.jobs.queue import connect_job_queue
from app.metrics.router import router as metrics_router
from app.notifications.router import router as notifications_admin_router
from app.payment_methods.router import router as payment_methods_router
from app.plans.router import admin_router as plans_admin_router
from app.plans.router import router as plans_router
from app.stripe_gateway.client import StripeGateway
from app.subscriptions.admin_router import router as subscriptions_admin_router
from app.subscriptions.dunning_router import router as dunning_admin_router
from app.subscriptions.router import router as subscriptions_router
from app.usage.router import router as usage_router
from app.webhooks.admin_router import router as webhook_admin_router
from app.webhooks.router import router as webhook_router

API_PREFIX = "/subscriptions/api"
HOT_ROUTES = (
    f"POST {API_PREFIX}/usage/",
    f"POST {API_PREFIX}/usage/batch/",
    f"GET {API_PREFIX}/entitlements/",
    f"GET {API_PREFIX}/usage/",
    f"POST {API_PREFIX}/stripe-webhook/",
)


def create_app(
    settings: Settings | None = None,
    clock: Clock | None = None,
    stripe_gateway: StripeGateway | None = None,
    rate_limiter: RequestRateLimiter | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    try:
        settings.jwt_verification_key  # noqa: B018 (fail at start-up, not on the first call)
        seller_branding = default_branding(settings)
    except ConfigurationError as error:
        refuse_to_start(str(error))
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.read_sessionmaker = create_read_sessionmaker(engine)
        app.state.driver_pool = await create_driver_pool(settings)
        bind_console(app, engine)
        # Connects lazily: the API starts, and answers what it can, while Redis is down.
        app.state.redis = connect_job_queue(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5
        )
        app.state.rate_limiter = rate_limiter or create_rate_limiter(settings)
        if settings.TUNE_GARBAGE_COLLECTOR:
            tune_for_serving()
        try:
            yield
        finally:
            await app.state.rate_limiter.aclose()
            await app.state.redis.aclose()
            await app.state.driver_pool.close()
            await engine.dispose()

    # /docs and /redoc with Swagger UI's and ReDoc's files served from this process (the
    # package bundles them), not from a CDN: they work on a network without the internet.
    app = FastAPIOffline(
        title="Billing service",
        description="Plans, Stripe subscriptions, usage and invoices for the call-center "
        "dashboard. Authenticate with the dashboard's access token: `Authorization: Bearer`.",
        version="1.0.0",
        lifespan=lifespan,
        # Never redirect: each route answers with and without its trailing slash.
        redirect_slashes=False,
        # The service exports its own Prometheus metrics and structured logs; FastAPI's
        # OpenTelemetry bridge checked on every request for a provider nobody configures.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.stripe_gateway = stripe_gateway or StripeGateway(settings)
    app.state.default_branding = seller_branding

    # Innermost: the routes the dialer and the telephony backend call all day, served without
    # FastAPI's route scan and dependency solving (app/core/hot_routes.py).
    app.add_middleware(HotRoutes, api=app, routes=HOT_ROUTES)
    # Just before routing: the API's routes are declared with a trailing slash.
    app.add_middleware(TrailingSlashMiddleware, prefix=API_PREFIX)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(DocsContentPolicyMiddleware)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    # Outside the middleware above: every answer, errors included, carries the CORS headers a
    # browser needs to read it.
    if settings.CORS_ALLOWED_ORIGINS:
        # Bearer tokens, not cookies: no credentials mode needed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ALLOWED_ORIGINS,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            max_age=600,
        )
    # Outside the others: every answer carries X-Request-ID, every line logged while the
    # request runs (the other middleware's included) its id, and every answer (413s, replays
    # and errors included) is timed in the metrics.
    app.add_middleware(RequestLoggingMiddleware)
    install_error_handlers(app)

    app.include_router(health_router)
    if settings.METRICS_TOKEN is not None:
        # Without a token, /metrics does not exist at all (404 to any method).
        app.include_router(metrics_router)
    # Rate limits (README, "Rate limits"), run before the routes' own dependencies: per
    # verified caller, except where there is no token.
    limited = error_responses(RateLimited)
    for router in (
        plans_router,
        plans_admin_router,
        customers_router,
        subscriptions_router,
        subscriptions_admin_router,
        dunning_admin_router,
        notifications_admin_router,
        payment_methods_router,
        billing_history_router,
        invoices_router,
        invoices_admin_router,
        usage_router,
        alerts_router,
        webhook_router,
        webhook_admin_router,
    ):
        limit = (
            PUBLIC_PER_IP
            if router is plans_router
            else WEBHOOK_PER_IP
            if router is webhook_router
            else PER_CALLER
        )
        app.include_router(router, prefix=API_PREFIX, dependencies=[limit], responses=limited)
    # The operator console (README, "Operator console").
    mount_console(app, settings)
    return app


def __getattr__(name: str) -> FastAPI:
    # `app.main:app` is built on first access, so importing this module (tests, the CLI)
    # does not read the environment.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
