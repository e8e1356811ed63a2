"""Checking that a webhook body is an event Stripe signed with one of our secrets."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stripe import SignatureVerificationError, Webhook, WebhookSignature


class InvalidWebhookSignature(Exception):
    """The body is not a Stripe event signed with one of our secrets, or it is stale."""


@dataclass(frozen=True, slots=True)
class SignedEvent:
    event: dict[str, Any]
    # The `t` of the signature that matched: Stripe signs every delivery afresh, so a new
    # value is a new delivery and the same value is the same delivery sent again.
    signed_at: int


# Seconds since the epoch, as Stripe writes them: ASCII digits, no sign, no spaces (int()
# would also take "+1", " 1", "1_0" and other scripts' digits).
_MAX_TIMESTAMP_DIGITS = 12


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """`t=<timestamp>,v1=<hex>,v1=<hex>,...` → (timestamp, v1 signatures).

    Parsed once, strictly, and the signatures are then checked over exactly this timestamp
    (see `verify_webhook`): a header with two `t`, or a `t` that is not plain decimal, would
    otherwise let one reader check the age of one timestamp while another checks the
    signature of another, so a captured old delivery could pass with a fresh-looking `t`.
    Other schemes (`v0`) are ignored as Stripe ignores them.
    """
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        name, separator, value = part.partition("=")
        if not separator:
            raise InvalidWebhookSignature("the signature header is malformed")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            signatures.append(value)
    if len(timestamps) != 1:
        raise InvalidWebhookSignature("the signature header needs exactly one timestamp")
    (timestamp,) = timestamps
    if not (
        timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
    ):
        raise InvalidWebhookSignature("the signature timestamp is not a plain number")
    if not signatures:
        raise InvalidWebhookSignature("the signature header has no v1 signature")
    return int(timestamp), signatures


def verify_webhook(
    payload: bytes, signature_header: str, secrets: list[str], now: datetime
) -> SignedEvent:
    """Check `Stripe-Signature` (HMAC-SHA256 over "{t}.{body}") against each secret in turn,
    so a secret being rotated and its successor both work, and refuse a signature older (or
    newer) than Stripe's default tolerance of five minutes; return the parsed event.

    The header is parsed here, once; stripe-python checks the HMAC over a header rebuilt from
    what was parsed, so the timestamp whose age is checked is the one that was signed.
    """
    if not secrets:
        raise InvalidWebhookSignature("no webhook secret is configured")
    signed_at, signatures = parse_signature_header(signature_header)
    if abs(now.timestamp() - signed_at) > Webhook.DEFAULT_TOLERANCE:
        raise InvalidWebhookSignature("the signature is too old")
    canonical_header = ",".join([f"t={signed_at}", *(f"v1={value}" for value in signatures)])
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidWebhookSignature("the body is not UTF-8") from error
    for secret in secrets:
        try:
            WebhookSignature.verify_header(text, canonical_header, secret, tolerance=None)
        except SignatureVerificationError:
            continue
        try:
            event = json.loads(payload)
        except ValueError as error:
            raise InvalidWebhookSignature("signed body is not JSON") from error
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise InvalidWebhookSignature("signed body is not an event")
        return SignedEvent(event, signed_at)
    raise InvalidWebhookSignature("no secret matches the signature")
