"""/docs and /redoc: Swagger UI's and ReDoc's files come from this service (fastapi-offline
bundles them). ReDoc's bundle still points one image, the Redocly logo, at Redocly's CDN; a
Content-Security-Policy on the two pages keeps the browser from asking any other host at all,
so the pages load the same with or without the internet."""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = frozenset({"/docs", "/redoc"})
# Their own inline bootstrap script and styles; ReDoc's search runs in a worker from a blob.
DOCS_CONTENT_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'self'"
)


class DocsContentPolicyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOCS_PATHS:
            await self.app(scope, receive, send)
            return

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Content-Security-Policy"] = DOCS_CONTENT_POLICY
            await send(message)

        await self.app(scope, receive, with_policy)
