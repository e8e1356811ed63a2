"""Logging for the API and the worker: one line per event, JSON in production.

structlog renders every line, ours and the standard library's alike: uvicorn, arq and the
other libraries log through `logging`, and the one root handler formats their records with
structlog's `ProcessorFormatter`, so they carry the same fields (timestamp, level, logger,
the request id and customer bound in `structlog.contextvars`) and pass the same redaction.
"""

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.core.config import Settings

REDACTED: Final = "[redacted]"

# The context that follows a request into the jobs it enqueues (`app.jobs.enqueue`).
PROPAGATED_KEYS: Final = ("request_id", "user_id", "customer_id")

# A key is redacted when one of its words (split on `_` and `-`) is one of these, or when it
# contains one of the longer ones: `Authorization`, `access_token`, `client_secret`,
# `card_number`, `cvc`... A card's `number` or a token must never reach a log line, whatever
# the dict it travels in.
_SENSITIVE_WORDS: Final = frozenset(
    {"authorization", "token", "password", "secret", "card", "number", "cvc", "cvv", "cookie"}
)
_SENSITIVE_PARTS: Final = ("authorization", "password", "passwd", "secret", "token")
# Secrets written into text (an exception's message, a library's log line): bearer tokens,
# JWTs, and Stripe's secret, restricted and webhook-signing keys.
_SECRET_IN_TEXT: Final = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+"
    r"|\bwhsec_[A-Za-z0-9]+"
)
# Libraries whose INFO lines would repeat ours in a worse form: stripe-python logs every
# call as logfmt text (our gateway logs it with the request id) and its DEBUG lines carry
# request and response bodies (client secrets); httpx logs every URL, query string included.
_QUIETED_LOGGERS: Final = ("stripe", "httpx", "httpcore")
# Loggers that servers configure with handlers of their own (uvicorn's dictConfig, arq's
# CLI): handed to the root handler instead, so their lines are rendered like ours.
_ADOPTED_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "arq")


def _is_sensitive(key: str) -> bool:
    normalized = key.lower().replace("-", "_")
    if any(part in normalized for part in _SENSITIVE_PARTS):
        return True
    return not _SENSITIVE_WORDS.isdisjoint(normalized.split("_"))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_IN_TEXT.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and _is_sensitive(key) else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    if isinstance(value, tuple):
        # Still a tuple: `exc_info` is one, and the console renderer reads it as such.
        return tuple(_redacted(item) for item in value)
    return value


def redact_sensitive(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace the values of sensitive keys (at any depth) and secrets found in text."""
    redacted: EventDict = _redacted(event_dict)
    return redacted


class _CurrentStreamHandler(logging.StreamHandler[TextIO]):
    """Writes to `sys.stdout` (or `sys.stderr`) as it is when a line is logged, like the
    standard library's last-resort handler does, so a replaced stream (a test's capture, a
    command runner's) is the one written to."""

    def __init__(self, stream_name: Literal["stdout", "stderr"]) -> None:
        self._stream_name = stream_name
        super().__init__()

    @property
    def stream(self) -> TextIO:
        current: TextIO = getattr(sys, self._stream_name)
        return current

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(settings: Settings, *, for_command: bool = False) -> None:
    """JSON lines in production (for the log pipeline), readable lines elsewhere; the same
    for structlog's loggers and the standard library's. Safe to call again.

    `for_command`: a `billing` command prints its report on stdout, so its log lines go to
    stderr, warnings and errors only (a line per Stripe call would bury the report)."""
    level = logging.getLevelNamesMapping().get(settings.LOG_LEVEL.upper(), logging.INFO)
    if for_command:
        level = max(level, logging.WARNING)
    structlog.configure(
        processors=[
            # The standard library's levels decide, read at each call: a logger cached on its
            # first use still follows a later reconfiguration (a command's, then the API's).
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            # Here as well as in the formatter: any other handler on the root logger (an error
            # tracker's) receives our lines already redacted.
            redact_sensitive,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    rendering: list[Processor] = (
        [
            structlog.processors.format_exc_info,
            # After the traceback is text, so secrets in exception messages are caught too.
            redact_sensitive,
            structlog.processors.JSONRenderer(),
        ]
        if settings.ENVIRONMENT == "production"
        else [redact_sensitive, structlog.dev.ConsoleRenderer(colors=False)]
    )
    handler = _CurrentStreamHandler("stderr" if for_command else "stdout")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, _CurrentStreamHandler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
    for name in _QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def propagated_log_context() -> dict[str, Any]:
    """The request's id and customer, as bound now: what a job enqueued here logs with."""
    bound = structlog.contextvars.get_contextvars()
    return {key: bound[key] for key in PROPAGATED_KEYS if bound.get(key) is not None}
