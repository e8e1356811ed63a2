"""What webhook processing, reconciliation, the import and `billing check-stripe` read: objects
fetched afresh, events, every customer and subscription, the account and its endpoints."""

from datetime import datetime
from typing import Any

from app.stripe_gateway.calls.base import Params, StripeCalls, plain
from app.stripe_gateway.parsing import (
    parse_account,
    parse_customer,
    parse_event,
    parse_subscription,
    parse_webhook_endpoint,
)
from app.stripe_gateway.translation import translated_errors
from app.stripe_gateway.types import (
    AccountState,
    CustomerState,
    StripeEventEnvelope,
    SubscriptionState,
    WebhookEndpointState,
)

# Objects a webhook may be about, and how to fetch each afresh.
_RETRIEVABLE = {
    "subscription": "subscriptions",
    "invoice": "invoices",
    "payment_method": "payment_methods",
    "subscription_schedule": "subscription_schedules",
    "charge": "charges",
    "customer": "customers",
    "setup_intent": "setup_intents",
    "dispute": "disputes",
    "checkout.session": "checkout.sessions",
}


class EventCalls(StripeCalls):
    async def retrieve_object(self, object_type: str, object_id: str) -> dict[str, Any] | None:
        """An object as Stripe holds it now, in the pinned version's shape; None if gone."""
        service_name = _RETRIEVABLE.get(object_type)
        if service_name is None:
            return None
        service = self._stripe
        for attribute in service_name.split("."):
            service = getattr(service, attribute)
        return await self._retrieve_or_none(service, object_id)

    async def list_events(self, *, created_from: datetime | None) -> list[StripeEventEnvelope]:
        """Stripe's events created at or after `created_from` (Stripe keeps 30 days), oldest
        first. Each is rendered in the API version it was created with, not the pinned one."""
        params: Params = {}
        if created_from is not None:
            params["created"] = {"gte": int(created_from.timestamp())}
        newest_first = [
            parse_event(event) for event in await self._every_page(self._stripe.events, params)
        ]
        # Reversed, then a stable sort: events of the same second keep Stripe's order.
        return sorted(reversed(newest_first), key=lambda event: event.created)

    async def list_customers(self) -> list[CustomerState]:
        """Every customer of the account, newest first (deleted ones are not listed)."""
        return [
            parse_customer(customer)
            for customer in await self._every_page(self._stripe.customers, {})
        ]

    async def list_subscriptions(
        self, *, customer_id: str | None = None
    ) -> list[SubscriptionState]:
        """Subscriptions in every status, canceled too, newest first; the account's, or one
        customer's."""
        params: Params = {"status": "all"}
        if customer_id is not None:
            params["customer"] = customer_id
        return [
            parse_subscription(subscription)
            for subscription in await self._every_page(self._stripe.subscriptions, params)
        ]

    # --- account -----------------------------------------------------------------------

    async def retrieve_account(self) -> AccountState:
        async with translated_errors():
            account = plain(await self._stripe.accounts.retrieve_current_async())
        return parse_account(account)

    async def list_webhook_endpoints(self) -> list[WebhookEndpointState]:
        async with translated_errors():
            page = plain(await self._stripe.webhook_endpoints.list_async({"limit": 100}))
        return [parse_webhook_endpoint(endpoint) for endpoint in page["data"]]
