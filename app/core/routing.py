from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.types import ASGIApp, Receive, Scope, Send


class SlashTolerantRouter(APIRouter):
    """Routes declared with their trailing slash, each registered once.

    The dashboard calls the seed's paths with a trailing slash, other clients often drop it,
    and Stripe counts a 3xx on the webhook as a failed delivery: `TrailingSlashMiddleware`
    adds the slash a request lacks before routing, so both forms reach the one route without
    a redirect. (Registering a twin of each route instead doubled the routes every request is
    matched against.)
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not path.endswith("/"):
            raise ValueError(f"declare {path!r} with its trailing slash")
        super().add_api_route(path, endpoint, **kwargs)


class TrailingSlashMiddleware:
    """Gives a request under `prefix` the trailing slash its routes are declared with."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/") + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if not path.endswith("/") and path.startswith(self.prefix):
                # In place: the middleware outside read the matched route from this dict.
                scope["path"] = path + "/"
        await self.app(scope, receive, send)
