"""The dashboard webhook's signature: Stripe's scheme, so the dashboard verifies it the way
it would verify Stripe's (README, "Notifications").

Header `Billing-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed
with DASHBOARD_WEBHOOK_SECRET. The timestamp is signed too, so a captured request cannot be
replayed later than the receiver's tolerance."""

import hashlib
import hmac

SIGNATURE_HEADER = "Billing-Signature"


def sign(body: bytes, *, secret: str, timestamp: int) -> str:
    """The header value for `body` sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
