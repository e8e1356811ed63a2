"""What travels on the wire: recorded requests, bracket-form decoding, Stripe's error bodies."""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

Params = dict[str, Any]
StripeObject = dict[str, Any]


@dataclass(frozen=True)
class StripeRequest:
    """One request as Stripe received it. `params` is decoded from the form body (POST) or the
    query string (GET, DELETE) into nested dicts, with lists for indexed keys (`items[0][price]`);
    the values stay the strings that were sent ("true", "1", ...)."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    stripe_version: str | None


_KEY_PART = re.compile(r"\[([^\]]*)\]")


def _split_key(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    return [head, *_KEY_PART.findall("[" + rest)] if rest else [head]


def decode_params(encoded: str) -> Params:
    """`a[b][0][c]=1&expand[0]=x` -> {"a": {"b": [{"c": "1"}]}, "expand": ["x"]}."""
    root: Params = {}
    for key, value in parse_qsl(encoded, keep_blank_values=True):
        parts = _split_key(key)
        container: Any = root
        for position, part in enumerate(parts):
            last = position == len(parts) - 1
            following = "" if last else parts[position + 1]
            child: Any = value if last else [] if following == "" or following.isdigit() else {}
            if isinstance(container, list):
                index = len(container) if part == "" else int(part)
                while len(container) <= index:
                    container.append(None)
                if last or container[index] is None:
                    container[index] = child
                container = container[index]
            else:
                if last or part not in container:
                    container[part] = child
                container = container[part]
    return root


def check_params(params: Params, allowed: set[str], endpoint: str) -> None:
    """Refuse a parameter the fake does not model, rather than silently ignoring it."""
    for name in params:
        if name not in allowed:
            raise invalid_request(
                f"FakeStripe does not model `{name}` on {endpoint}; extend tests/stripe.",
                param=name,
            )


def as_int(value: Any, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    return int(value)


def as_bool(value: Any) -> bool:
    return value is True or value == "true"


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, dict):  # `items[0]`... sent sparsely would decode as a dict
        return [value[key] for key in sorted(value, key=int)]
    return list(value) if isinstance(value, list) else [value]


def merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe merges metadata keys; an empty value deletes a key; `metadata=""` clears all."""
    if update == "":
        return {}
    merged = dict(current)
    for key, value in (update or {}).items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class StripeApiError(Exception):
    """Raised by a handler: the fake answers `status` with Stripe's error envelope."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.body = {"error": {key: value for key, value in error.items() if value is not None}}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeApiError:
    return StripeApiError(
        status, {"type": "invalid_request_error", "message": message, "param": param, "code": code}
    )


def resource_missing(
    kind: str, identifier: str, *, param: str | None = "id", status: int = 404
) -> StripeApiError:
    return invalid_request(
        f"No such {kind}: '{identifier}'", param=param, code="resource_missing", status=status
    )


def card_error(
    message: str,
    *,
    code: str,
    decline_code: str | None = None,
    payment_intent: StripeObject | None = None,
) -> StripeApiError:
    return StripeApiError(
        402,
        {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "payment_intent": payment_intent,
        },
    )


def api_error(status: int) -> StripeApiError:
    if status == 429:
        return StripeApiError(
            429,
            {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Too many requests hit the API too quickly.",
            },
        )
    return StripeApiError(
        status, {"type": "api_error", "message": "An unknown error occurred (injected by a test)."}
    )


def list_object(url: str, data: list[StripeObject], params: Params) -> StripeObject:
    limit = as_int(params.get("limit"), 10) or 10
    return {
        "object": "list",
        "url": url,
        "has_more": len(data) > limit,
        "data": data[:limit],
    }
