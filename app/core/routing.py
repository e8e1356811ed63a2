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


UNMATCHED_ROUTE = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/subscriptions/api/plans/{plan_id}`, never a raw
    path with ids, which would make a series per id), without its trailing slash; a path no
    route matches is `unmatched`."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED_ROUTE
    # FastAPI hands over the route as its router declared it, without the prefixes it was
    # included under. Those prefixes are fixed text (no parameters here), so they are the
    # requested path's leading segments, before the ones the template accounts for.
    requested = str(scope["path"]).split("/")
    template_segments = template.count("/")
    prefix = "/".join(requested[: max(len(requested) - template_segments, 1)])
    return (prefix + template).rstrip("/") or "/"
