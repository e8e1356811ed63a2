"""Typed errors and the one place that renders them.

Every error a client sees has the same envelope:
`{"success": false, "error": {"code": ..., "message": ..., "details": ...}}`.
Services raise an `AppError` subclass; the handlers below render it. Anything else is a bug:
it is logged with its traceback and the client gets a bare 500 envelope.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = structlog.get_logger(__name__)


class AppError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    message: ClassVar[str] = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail_message = message or self.message
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(self.detail_message)


class Unauthorized(AppError):
    status_code = 401
    code = "not_authenticated"
    message = "A valid bearer token is required."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message, details=details, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "This token may not do that."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class InvalidRequest(AppError):
    status_code = 422
    code = "invalid_request"
    message = "The request is not valid."


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    message = "The request body is too large."


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    message = "A dependency of the service is unavailable; retry later."


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    """The body of every error response."""

    success: bool = False
    error: ErrorBody


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "success": False,
        "error": {"code": code, "message": message, "details": jsonable_encoder(details)},
    }
    return JSONResponse(status_code=status_code, content=body, headers=dict(headers or {}))


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route, so /docs lists the errors it can return."""
    documented: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = documented.setdefault(
            error.status_code, {"model": ErrorEnvelope, "description": ""}
        )
        codes = [c for c in entry["description"].split(", ") if c]
        entry["description"] = ", ".join([*codes, error.code])
    return documented


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(part) for part in item["loc"]),
            "message": item["msg"],
            "type": item["type"],
        }
        for item in error.errors()
    ]


# What FastAPI says when its JSON parser raises something other than a decode error.
FASTAPI_BODY_PARSE_FAILURE = "There was an error parsing the body"

_HTTP_STATUS_CODES = {
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def handle_app_error(_: Request, error: AppError) -> JSONResponse:
        return error_response(
            error.status_code, error.code, error.detail_message, error.details, error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def handle_validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        details = _validation_details(error)
        if any(item["type"] == "json_invalid" for item in details):
            return error_response(422, "malformed_json", "The request body is not valid JSON.")
        return error_response(
            422, "validation_error", "The request has invalid or missing fields.", details
        )

    @app.exception_handler(StarletteHTTPException)
    async def handle_http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == FASTAPI_BODY_PARSE_FAILURE:
            # JSON too deep or a number too long for the parser: malformed, like any other.
            return error_response(422, "malformed_json", "The request body is not valid JSON.")
        code = _HTTP_STATUS_CODES.get(error.status_code, "http_error")
        message = error.detail if isinstance(error.detail, str) else "Request failed."
        return error_response(error.status_code, code, message, headers=error.headers)

    @app.exception_handler(Exception)
    async def handle_unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled_error", path=request.url.path, method=request.method)
        return error_response(500, "internal_error", "An unexpected error occurred.")
