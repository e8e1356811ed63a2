import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import HTTP_REQUEST_DURATION

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


class RequestMetricsMiddleware:
    """Observes every HTTP request's duration by method, route template and status.

    The router records the matched route in the scope (the same dict this middleware holds),
    so the template is read once the app has answered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            # The server answers an escaped error with a 500.
            status = status or 500
            raise
        finally:
            # None: cancelled (the client went away) before any answer; nothing to observe.
            if status is not None:
                HTTP_REQUEST_DURATION.labels(
                    scope["method"], route_template(scope), str(status)
                ).observe(time.perf_counter() - started)
