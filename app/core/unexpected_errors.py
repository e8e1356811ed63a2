import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import error_response

logger = structlog.get_logger(__name__)


class UnexpectedErrorMiddleware:
    """Answers a bug with the 500 envelope from inside the middleware stack.

    Starlette's own last-resort handler sits outside every middleware, so its 500 would leave
    without CORS headers and a dashboard page could not read it. The traceback is logged,
    never sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled_error", path=scope.get("path"), method=scope.get("method"))
            if response_started:
                raise
            response = error_response(500, "internal_error", "An unexpected error occurred.")
            await response(scope, receive, send)
