"""`StripeGateway`: every call this service makes to Stripe.

- The client pins the API version that stripe-python pins (`stripe.api_version`); the code
  reads that version's shapes (`parsing.py`).
- Every write takes an `idempotency_key` built by the caller from our own ids and the request's
  content, so a retried request makes the same Stripe call and Stripe returns the first result
  instead of charging or creating twice.
- Stripe's errors become our typed errors in one place (`translation.py`).

The calls are grouped by Stripe resource in `calls/`; this class is all of them.
"""

from typing import Any

import stripe

from app.core.config import Settings
from app.stripe_gateway.calls.base import SAAS_TAX_CODE
from app.stripe_gateway.calls.catalog import CatalogCalls
from app.stripe_gateway.calls.checkout import CheckoutCalls
from app.stripe_gateway.calls.customers import CustomerCalls
from app.stripe_gateway.calls.events import EventCalls
from app.stripe_gateway.calls.invoices import InvoiceCalls
from app.stripe_gateway.calls.subscriptions import SubscriptionCalls
from app.stripe_gateway.http import LoggedHTTPXClient

__all__ = ["PINNED_API_VERSION", "SAAS_TAX_CODE", "StripeGateway"]

PINNED_API_VERSION: str = stripe.api_version


class StripeGateway(
    CustomerCalls, SubscriptionCalls, CatalogCalls, InvoiceCalls, EventCalls, CheckoutCalls
):
    def __init__(self, settings: Settings) -> None:
        secret_key = settings.STRIPE_SECRET_KEY
        self._client = stripe.StripeClient(
            secret_key.get_secret_value() if secret_key else "sk_test_not_configured",
            stripe_version=PINNED_API_VERSION,
            base_addresses={"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {},
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            http_client=LoggedHTTPXClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        )
        self._stripe: Any = self._client.v1
        self.automatic_tax = settings.STRIPE_AUTOMATIC_TAX
