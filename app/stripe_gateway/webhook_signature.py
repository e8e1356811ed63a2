"""Checking that a webhook body is an event Stripe signed with one of our secrets."""

import json
from datetime import datetime
from typing import Any

import stripe


class InvalidWebhookSignature(Exception):
    """The body is not a Stripe event signed with one of our secrets, or it is stale."""


def _signed_at(signature_header: str) -> int | None:
    for part in signature_header.split(","):
        name, _, value = part.strip().partition("=")
        # ASCII digits only, and a sane length: "²" is a digit to str.isdigit, and a
        # 5,000-digit number is no timestamp.
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            return int(value)
    return None


def verify_webhook(
    payload: bytes, signature_header: str, secrets: list[str], now: datetime
) -> dict[str, Any]:
    """Check `Stripe-Signature` (HMAC-SHA256 over "{t}.{body}") against each secret in turn,
    so a secret being rotated and its successor both work, and refuse a signature older (or
    newer) than Stripe's default tolerance of five minutes; return the parsed event.

    stripe-python checks the HMAC; the age is checked here against the injected clock."""
    signed_at = _signed_at(signature_header or "")
    if signed_at is None or not secrets:
        raise InvalidWebhookSignature("missing signature or secret")
    if abs(now.timestamp() - signed_at) > stripe.Webhook.DEFAULT_TOLERANCE:
        raise InvalidWebhookSignature("the signature is too old")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), signature_header, secret, tolerance=None
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
        try:
            event = json.loads(payload)
        except ValueError as error:
            raise InvalidWebhookSignature("signed body is not JSON") from error
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise InvalidWebhookSignature("signed body is not an event")
        return event
    raise InvalidWebhookSignature("no secret matches the signature, or it is too old")
