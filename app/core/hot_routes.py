"""A short way in for the few routes the dialer and the telephony backend call all day.

FastAPI finds a request's route by trying every route of every included router in turn, and
solves the route's dependencies by walking its dependency tree, classifying each callable and
building its cache key, on every request: for `POST usage/` that was more than half of the
request's CPU, more than the ingestion and its database work together. For the routes named
in `HotRoutes`, the route is looked up by method and exact path in a dict, and its endpoint
is called through a plan of its dependencies compiled once: the same endpoint, the same
dependencies (the router's rate limit included), the same validation errors and the same
response serialization as FastAPI's, so each route is still declared once, in its domain's
router, and described by the OpenAPI schema from that declaration.

What the plan supports is what these routes use: async functions and async generators (the
request's session, closed before the answer is sent, like FastAPI's `scope="function"`),
security schemes, the request, a `Response` to set the status on, query, header, cookie and
path parameters, and one JSON body. A route that needs anything else is refused at the first
request, never served differently.
"""

import email.message
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import BackgroundTasks, FastAPI, params
from fastapi._compat import ModelField, Undefined, field_annotation_is_sequence
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    _validate_value_with_model_field,
    request_body_to_args,
    request_params_to_args,
)
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts, serialize_response
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

# FastAPI's answer when a body is JSON it cannot parse for another reason than its syntax
# (nested too deep, a number too long), which the error handlers know.
_BODY_PARSE_FAILURE = "There was an error parsing the body"


class UnsupportedHotRoute(Exception):
    """A route named in `HotRoutes` that the compiled plan cannot serve as FastAPI would."""


@dataclass(frozen=True, slots=True)
class _ScalarParameter:
    """A query, header or cookie parameter of one value under one name: FastAPI's
    request_params_to_args for it, with what that function works out from the field's
    annotation on every request (a model? a list? which names?) worked out once."""

    field: ModelField
    key: str
    loc: tuple[str, str]


def _scalar_parameters(fields: Sequence[ModelField]) -> tuple[_ScalarParameter, ...] | None:
    """The fields as scalar parameters, or None when one of them is more than that (a model,
    a list, several accepted names): FastAPI's own function then reads them all."""
    scalars: list[_ScalarParameter] = []
    for field in fields:
        aliases = _get_param_aliases(field)
        if (
            _get_param_model(field) is not None
            or len(aliases) != 1
            or field_annotation_is_sequence(field.field_info.annotation)
            or not isinstance(field.field_info, params.Param)
        ):
            return None
        [(_, key)] = aliases
        scalars.append(_ScalarParameter(field, key, (field.field_info.in_.value, key)))
    return tuple(scalars)


@dataclass(frozen=True, slots=True)
class _Step:
    """One dependency, or the endpoint, and where each of its arguments comes from."""

    call: Callable[..., Any]
    is_generator: bool
    context: Callable[..., AbstractAsyncContextManager[Any]] | None
    # (argument name, index of an earlier step's result)
    dependencies: tuple[tuple[str, int], ...]
    connection_names: tuple[str, ...]
    response_name: str | None
    background_name: str | None
    # The step's parameters by where they are read from: (the request's attribute holding
    # them, their fields, the same fields as scalar parameters, or None to let FastAPI's
    # own function read them); only the kinds the step has.
    parameters: tuple[tuple[str, list[ModelField], tuple[_ScalarParameter, ...] | None], ...]

    def arguments(
        self,
        request: Request,
        sub_response: Response,
        background: BackgroundTasks | None,
        results: list[Any],
        failed: list[bool],
        errors: list[Any],
    ) -> dict[str, Any] | None:
        """The step's arguments, or None when it cannot run (a dependency of it failed,
        or one of its parameters is invalid: the errors are added to `errors`)."""
        values: dict[str, Any] = {}
        for name, index in self.dependencies:
            if failed[index]:
                return None
            values[name] = results[index]
        for name in self.connection_names:
            values[name] = request
        if self.response_name is not None:
            values[self.response_name] = sub_response
        if self.background_name is not None:
            values[self.background_name] = background
        own_errors: list[Any] = []
        for source, fields, scalars in self.parameters:
            received = getattr(request, source)
            if scalars is None:
                parsed, field_errors = request_params_to_args(fields, received)
                values.update(parsed)
                own_errors += field_errors
                continue
            for scalar in scalars:
                value = received.get(scalar.key)
                parsed_value, field_errors = _validate_value_with_model_field(
                    field=scalar.field,
                    value=Undefined if value is None else value,
                    values=values,
                    loc=scalar.loc,
                )
                if field_errors:
                    own_errors += field_errors
                else:
                    values[scalar.field.name] = parsed_value
        if own_errors:
            errors += own_errors
            return None
        return values


def _function_of(call: Callable[..., Any]) -> Callable[..., Any]:
    # A security scheme is an instance: what runs is its class's __call__.
    return call if inspect.isroutine(call) else type(call).__call__


def _compile(dependant: Dependant, steps: list[_Step], indexes: dict[Any, int], label: str) -> None:
    """Append the steps of `dependant` (its dependencies first, depth first, each callable
    once: FastAPI's order and its per-request cache) and then its own."""
    dependencies: list[tuple[str, int]] = []
    for sub in dependant.dependencies:
        if not sub.use_cache:
            raise UnsupportedHotRoute(f"{label}: a dependency with use_cache=False")
        if sub.call not in indexes:
            _compile(sub, steps, indexes, label)
            indexes[sub.call] = len(steps) - 1
        if sub.name is not None:
            dependencies.append((sub.name, indexes[sub.call]))
    call = dependant.call
    assert call is not None
    is_generator = inspect.isasyncgenfunction(_function_of(call))
    if not is_generator and not inspect.iscoroutinefunction(_function_of(call)):
        raise UnsupportedHotRoute(f"{label}: {call!r} is not async (it would need a thread)")
    if is_generator and dependant.scope != "function":
        raise UnsupportedHotRoute(f"{label}: {call!r} is a generator not scoped to the function")
    if dependant.websocket_param_name or dependant.security_scopes_param_name:
        raise UnsupportedHotRoute(f"{label}: websockets or security scopes")
    steps.append(
        _Step(
            call=call,
            is_generator=is_generator,
            context=asynccontextmanager(call) if is_generator else None,
            dependencies=tuple(dependencies),
            connection_names=tuple(
                name
                for name in (dependant.request_param_name, dependant.http_connection_param_name)
                if name is not None
            ),
            response_name=dependant.response_param_name,
            background_name=dependant.background_tasks_param_name,
            parameters=tuple(
                (source, fields, None if source == "path_params" else _scalar_parameters(fields))
                for source, fields in (
                    ("path_params", dependant.path_params),
                    ("query_params", dependant.query_params),
                    ("headers", dependant.header_params),
                    ("cookies", dependant.cookie_params),
                )
                if fields
            ),
        )
    )


def _is_json(content_type: str | None) -> bool:
    # As FastAPI decides it: application/json or application/*+json; anything else, and no
    # content type at all, is not parsed.
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class _HotRoute:
    """A route's endpoint with its compiled plan, answering like FastAPI's handler."""

    def __init__(self, route: APIRoute, context: Any, label: str) -> None:
        dependant: Dependant = context.dependant
        if dependant.body_params and (
            len(dependant.body_params) != 1 or context._embed_body_fields
        ):
            raise UnsupportedHotRoute(f"{label}: more than one body parameter")
        if not isinstance(context.response_class, DefaultPlaceholder) or (
            context.response_model_include
            or context.response_model_exclude
            or context.response_model_exclude_unset
            or context.response_model_exclude_defaults
            or context.response_model_exclude_none
            or not context.response_model_by_alias
        ):
            raise UnsupportedHotRoute(f"{label}: a response class or response model options")
        self.route = route
        self.endpoint = dependant.call
        self.steps: list[_Step] = []
        _compile(dependant, self.steps, {}, label)
        self.takes_background_tasks = any(step.background_name for step in self.steps)
        self.body_field = dependant.body_params[0] if dependant.body_params else None
        # The body validated straight from its bytes: one pass in pydantic's core instead of
        # json.loads and then validation. Only a body that fails it goes FastAPI's way, so
        # its errors read exactly as FastAPI's.
        self.body_adapter: TypeAdapter[Any] | None = None
        if self.body_field is not None:
            annotation: Any = self.body_field.field_info.annotation
            self.body_adapter = TypeAdapter(annotation)
        self.status_code: int | None = context.status_code
        self.response_field = context.response_field

    async def _body(self, request: Request) -> tuple[Any, list[Any]]:
        """The body's value for the endpoint, or the errors FastAPI would give for it."""
        assert self.body_field is not None and self.body_adapter is not None
        raw = await request.body()
        # No body at all reads as a missing field, as in FastAPI.
        received: Any = PydanticUndefined
        if raw:
            received = raw
            if _is_json(request.headers.get("content-type")):
                try:
                    return self.body_adapter.validate_json(raw), []
                except ValidationError:
                    pass
                try:
                    received = json.loads(raw)
                except json.JSONDecodeError as error:
                    raise RequestValidationError(
                        [
                            {
                                "type": "json_invalid",
                                "loc": ("body", error.pos),
                                "msg": "JSON decode error",
                                "input": {},
                                "ctx": {"error": error.msg},
                            }
                        ],
                        body=error.doc,
                    ) from error
                except (ValueError, RecursionError) as error:
                    raise HTTPException(status_code=400, detail=_BODY_PARSE_FAILURE) from error
        values, errors = await request_body_to_args(
            body_fields=[self.body_field], received_body=received, embed_body_fields=False
        )
        return values.get(self.body_field.name), errors

    async def handle(self, request: Request) -> Response:
        body: Any = None
        body_errors: list[Any] = []
        errors: list[Any] = []
        if self.body_field is not None:
            # Before the dependencies, as FastAPI reads it: malformed JSON is a 422 before a
            # token is even looked at.
            body, body_errors = await self._body(request)
        # Where an endpoint sets its status or headers, as FastAPI's sub-response.
        sub_response = Response()
        del sub_response.headers["content-length"]
        sub_response.status_code = None  # type: ignore[assignment]
        # Run once the answer is sent, as Starlette runs a response's background tasks.
        background = BackgroundTasks() if self.takes_background_tasks else None
        results: list[Any] = [None] * len(self.steps)
        failed = [False] * len(self.steps)
        async with AsyncExitStack() as function_scope:
            for index, step in enumerate(self.steps):
                values = step.arguments(request, sub_response, background, results, failed, errors)
                if values is None:
                    failed[index] = True
                    continue
                if step.call is self.endpoint:
                    if self.body_field is not None:
                        if body_errors:
                            errors += body_errors
                        values[self.body_field.name] = body
                    if errors:
                        break
                    results[index] = await step.call(**values)
                elif step.is_generator:
                    assert step.context is not None
                    results[index] = await function_scope.enter_async_context(
                        step.context(**values)
                    )
                else:
                    results[index] = await step.call(**values)
            if errors:
                raise RequestValidationError(errors, body=body)
            returned = results[-1]
            if isinstance(returned, Response):
                if returned.background is None and background is not None:
                    returned.background = background
                return returned
            content = await serialize_response(
                field=self.response_field, response_content=returned, dump_json=True
            )
        response = Response(
            content=content,
            status_code=sub_response.status_code or self.status_code or 200,
            media_type="application/json",
            background=background,
        )
        response.headers.raw.extend(sub_response.headers.raw)
        return response


class HotRoutes:
    """Innermost middleware: serves the named routes through their compiled plans; every
    other request goes on to FastAPI's router.

    `routes` are "METHOD /full/path/" as declared (the trailing slash is added before this
    layer). Errors are answered by the app's own exception handlers, as FastAPI's exception
    middleware would; anything they do not handle goes on up like any bug.
    """

    def __init__(self, app: ASGIApp, *, api: FastAPI, routes: Iterable[str]) -> None:
        self.app = app
        self.api = api
        # Built when Starlette builds the middleware stack, at the app's start-up (its
        # lifespan): a route the plan cannot serve stops the start, not a request.
        self.table = self._build(routes)

    def _build(self, routes: Iterable[str]) -> dict[tuple[str, str], _HotRoute]:
        wanted = {tuple(name.split(" ", 1)): name for name in routes}
        table: dict[tuple[str, str], _HotRoute] = {}
        for route_context in iter_route_contexts(self.api.routes):
            route = route_context.original_route
            if not isinstance(route, APIRoute) or route_context.path is None:
                continue
            for method in route_context.methods or ():
                key = (method, route_context.path)
                if key in wanted:
                    if route_context.param_convertors:
                        raise UnsupportedHotRoute(f"{wanted[key]}: path parameters")
                    context = route_context._route_context or route
                    table[key] = _HotRoute(route, context, wanted[key])
        missing = set(wanted) - set(table)
        if missing:
            raise UnsupportedHotRoute(f"no such route: {sorted(wanted[key] for key in missing)}")
        return table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.api.dependency_overrides:
            await self.app(scope, receive, send)
            return
        hot = self.table.get((scope["method"], scope["path"]))
        if hot is None:
            await self.app(scope, receive, send)
            return
        # What FastAPI's routing records: the metrics and logs read the matched route.
        scope["route"] = hot.route
        scope["endpoint"] = hot.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await hot.handle(request)
        except Exception as error:
            handler = _handler_for(self.api.exception_handlers, error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)


def _handler_for(
    handlers: Mapping[Any, Callable[..., Any]], error: Exception
) -> Callable[..., Any] | None:
    # Starlette's exception middleware's lookup: the closest class in the error's MRO with a
    # handler, the catch-all `Exception` excepted (that one is the last resort's, outside).
    for cls in type(error).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
