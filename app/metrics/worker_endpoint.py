"""The worker's `/metrics`: its own counters (webhook handlers, Stripe calls, jobs' alerts).

arq runs no web server, so this is prometheus-client's WSGI app on a daemon thread, behind
the same bearer token as the API's. The stores' gauges are the API's to serve; a worker
serves only what it counted itself.
"""

import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from pydantic import SecretStr

from app.core.config import Settings
from app.core.metrics import REGISTRY
from app.metrics.access import bearer_token_matches


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        # One stderr line per scrape would drown the worker's own log.
        return


def _token_protected(app: WSGIApplication, token: SecretStr) -> WSGIApplication:
    def protected(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not bearer_token_matches(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", "Bearer"), ("Content-Type", "text/plain; charset=utf-8")],
            )
            return [b"A valid bearer token is required.\n"]
        return app(environ, start_response)

    return protected


def start_worker_metrics_endpoint(settings: Settings) -> WSGIServer | None:
    """Serve the worker's metrics on HOST:WORKER_METRICS_PORT; None unless both that port
    and METRICS_TOKEN are set."""
    if settings.METRICS_TOKEN is None or settings.WORKER_METRICS_PORT is None:
        return None
    server = make_server(
        settings.HOST,
        settings.WORKER_METRICS_PORT,
        _token_protected(make_wsgi_app(REGISTRY), settings.METRICS_TOKEN),
        server_class=ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def stop_worker_metrics_endpoint(server: WSGIServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
