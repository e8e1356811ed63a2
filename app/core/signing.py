"""Stripe's webhook signature scheme, one implementation for what signs with it: the
dashboard webhook's `Billing-Signature` and the sample Stripe events `billing test-webhook`
sends.

`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`: the timestamp is signed too, so a
captured request cannot be replayed later than the receiver's tolerance."""

import hashlib
import hmac


def stripe_scheme_signature(payload: bytes, *, secret: str, timestamp: int) -> str:
    """The signature header's value for `payload` sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
