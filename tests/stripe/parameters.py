"""Which request parameters an endpoint accepts, read from stripe-python's generated `*Params`
TypedDicts (`stripe.params`) of the pinned version: the same lists Stripe's API refuses
anything outside of, with "Received unknown parameter".

Only names are checked, at every depth (nested objects, lists of objects); scalar values are
not, since the wire carries every value as a string.
"""

import functools
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeGuard, Union

import stripe
import typing_extensions
from stripe._request_options import RequestOptions

from tests.stripe.wire import Params

# Every top-level Params type extends RequestOptions: the client's own options (api key,
# idempotency key...), which never travel as parameters. Its annotations name types that
# module imports only for type checkers; these resolve them.
_REQUEST_OPTION_NAMES = frozenset(RequestOptions.__annotations__)
_TYPE_CHECKING_NAMES = {"StripeContext": stripe.StripeContext, "Mapping": Mapping}


def is_params_type(candidate: object) -> TypeGuard[type]:
    """Whether `candidate` is one of stripe-python's generated request parameter types."""
    return (
        isinstance(candidate, type)
        and typing_extensions.is_typeddict(candidate)
        and candidate.__module__.startswith("stripe.params.")
    )


@functools.cache
def _fields(typed_dict: type) -> dict[str, Any]:
    hints = typing_extensions.get_type_hints(typed_dict, localns=_TYPE_CHECKING_NAMES)
    if hints.keys() >= _REQUEST_OPTION_NAMES:  # a top-level type: drop the client's options
        return {name: hint for name, hint in hints.items() if name not in _REQUEST_OPTION_NAMES}
    return hints


@functools.cache
def accepted_parameters(params_type: type) -> frozenset[str]:
    """The top-level parameter names of an endpoint (resolving every nested type on the way,
    so a type that cannot be read fails here rather than in the middle of a test)."""
    fields = _fields(params_type)
    for hint in fields.values():
        _resolve_nested(hint, set())
    return frozenset(fields)


def _resolve_nested(hint: Any, seen: set[type]) -> None:
    for member in _members(hint):
        if typing_extensions.is_typeddict(member) and member not in seen:
            seen.add(member)
            for nested in _fields(member).values():
                _resolve_nested(nested, seen)
        for argument in typing.get_args(member):
            if not isinstance(argument, str):
                _resolve_nested(argument, seen)


def unknown_parameter(params: Params, params_type: type) -> str | None:
    """The first parameter of `params` (decoded from the bracket form) that `params_type` does
    not list, named as Stripe names it (`items[0][price_data]`); None if all are known."""
    return _unknown_field(params, params_type, prefix="")


def _unknown_field(value: Mapping[str, Any], typed_dict: type, prefix: str) -> str | None:
    fields = _fields(typed_dict)
    for name, item in value.items():
        path = f"{prefix}[{name}]" if prefix else name
        if name not in fields:
            return path
        unknown = _unknown_in_value(item, _members(fields[name]), path)
        if unknown is not None:
            return unknown
    return None


def _unknown_in_value(value: Any, members: list[Any], path: str) -> str | None:
    """The first unknown parameter inside `value`, whose type is one of `members`."""
    if isinstance(value, dict) and value:
        mappings = [member for member in members if _is_mapping(member)]
        if mappings:
            # `metadata` and the like take any key; a typed value (`Dict[str, X]`) is checked.
            value_types = [
                argument
                for mapping in mappings
                for argument in typing.get_args(mapping)[1:2]
                if argument is not str
            ]
            if not value_types:
                return None
            return _first_unknown(
                (item, _flatten(value_types), f"{path}[{key}]") for key, item in value.items()
            )
        objects = [member for member in members if typing_extensions.is_typeddict(member)]
        if not objects:
            # An object where the type allows only scalars or lists: its keys are unknown.
            return f"{path}[{next(iter(value))}]"
        unknowns = [_unknown_field(value, typed_dict, path) for typed_dict in objects]
        return None if None in unknowns else unknowns[0]
    if isinstance(value, list):
        element_types = [
            typing.get_args(member)[0]
            for member in members
            if typing.get_origin(member) is list and typing.get_args(member)
        ]
        if not element_types:
            # A list where the type takes none: its elements are unknown.
            return next((f"{path}[{i}]" for i, item in enumerate(value) if item is not None), None)
        return _first_unknown(
            (element, _flatten(element_types), f"{path}[{index}]")
            for index, element in enumerate(value)
            if element is not None  # a gap in a sparse list
        )
    return None


def _first_unknown(checks: Iterable[tuple[Any, list[Any], str]]) -> str | None:
    for value, members, path in checks:
        unknown = _unknown_in_value(value, members, path)
        if unknown is not None:
            return unknown
    return None


def _flatten(hints: list[Any]) -> list[Any]:
    return [member for hint in hints for member in _members(hint)]


def _members(hint: Any) -> list[Any]:
    """The alternatives of a hint: `Literal[''] | X | List[Y]` -> [Literal[''], X, List[Y]]."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return [member for argument in typing.get_args(hint) for member in _members(argument)]
    if origin in (typing_extensions.NotRequired, typing_extensions.Required):
        return _members(typing.get_args(hint)[0])
    if origin is Literal:
        return []
    return [hint]


def _is_mapping(hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    return (
        isinstance(origin, type)
        and not typing_extensions.is_typeddict(origin)
        and issubclass(origin, Mapping)
    )
