"""Signed sample events for `billing test-webhook`, built from Stripe's own fixtures.

What the seed's "test webhook processing" did, against a running service: the event goes
through the real endpoint, signature check included.
"""

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from app.core.signing import stripe_scheme_signature

SAMPLES = Path(__file__).with_name("sample_objects.json")

# Which fixture object each event type carries.
OBJECT_OF_TYPE = {
    "customer.subscription": "subscription",
    "subscription_schedule": "subscription_schedule",
    "invoice": "invoice",
    "payment_method": "payment_method",
    "setup_intent": "setup_intent",
    "charge.dispute": "dispute",
    "charge": "charge",
    "customer": "customer",
    "checkout.session": "checkout.session",
}


@cache
def _resources() -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = json.loads(SAMPLES.read_text())["resources"]
    return resources


def sample_event(event_type: str, *, api_version: str, created: int) -> dict[str, Any]:
    prefix = next(
        (prefix for prefix in sorted(OBJECT_OF_TYPE, key=len, reverse=True)
         if event_type.startswith(prefix + ".")),
        None,
    )  # fmt: skip
    if prefix is None:
        raise ValueError(f"no sample object for {event_type}")
    event = copy.deepcopy(_resources()["event"])
    event.update(
        id=f"evt_test_{uuid.uuid4().hex[:24]}",
        type=event_type,
        created=created,
        api_version=api_version,
        livemode=False,
        data={"object": copy.deepcopy(_resources()[OBJECT_OF_TYPE[prefix]])},
    )
    return event


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """`Stripe-Signature` as Stripe computes it: HMAC-SHA256 over "{t}.{body}"."""
    return stripe_scheme_signature(payload, secret=secret, timestamp=timestamp)
