"""Stripe's hosted pages: Checkout Sessions (subscription mode) and billing portal sessions."""

from datetime import datetime

from app.stripe_gateway.calls.base import Params, StripeCalls, plain
from app.stripe_gateway.calls.subscriptions import subscription_terms
from app.stripe_gateway.errors import StripeIntegrationError
from app.stripe_gateway.parsing import parse_checkout_session
from app.stripe_gateway.translation import translated_errors
from app.stripe_gateway.types import CheckoutSessionState


class CheckoutCalls(StripeCalls):
    async def create_checkout_session(
        self,
        *,
        customer_id: str,
        items: list[tuple[str, int]],
        trial_days: int,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
        idempotency_key: str,
        pending_invoice_item_interval: str | None = None,
    ) -> CheckoutSessionState:
        """A session in which the customer pays for the subscription `create_subscription`
        would create: the same items, trial, billing mode, tax and metadata."""
        subscription_data = subscription_terms(
            metadata=metadata,
            trial_days=trial_days,
            pending_invoice_item_interval=pending_invoice_item_interval,
        )
        params: Params = {
            "mode": "subscription",
            "customer": customer_id,
            "line_items": [{"price": price, "quantity": quantity} for price, quantity in items],
            "subscription_data": subscription_data,
            # On the session too: `checkout.session.*` events find our reservation by it.
            "metadata": metadata,
            "client_reference_id": metadata.get("billing_subscription_id"),
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires_at.timestamp()),
        }
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        async with translated_errors():
            session = plain(
                await self._stripe.checkout.sessions.create_async(
                    params, self._options(idempotency_key)
                )
            )
        return parse_checkout_session(session)

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionState:
        async with translated_errors():
            session = plain(await self._stripe.checkout.sessions.retrieve_async(session_id))
        return parse_checkout_session(session)

    async def find_checkout_sessions_by_metadata(
        self, *, customer_id: str, key: str, value: str
    ) -> list[CheckoutSessionState]:
        """The customer's sessions created for a reservation (open, complete or expired), if an
        earlier attempt got that far. A list by customer, which is current, unlike search; the
        list cannot filter by metadata, so the match is made here."""
        async with translated_errors():
            page = plain(
                await self._stripe.checkout.sessions.list_async(
                    {"customer": customer_id, "limit": 100}
                )
            )
        return [
            parse_checkout_session(session)
            for session in page["data"]
            if (session.get("metadata") or {}).get(key) == value
        ]

    async def expire_checkout_session(self, session_id: str) -> CheckoutSessionState:
        """Close an open session so it can no longer be paid; returns the session as it ends
        up (`expired`, or `complete` when the customer paid first)."""
        try:
            async with translated_errors():
                session = plain(await self._stripe.checkout.sessions.expire_async(session_id))
            return parse_checkout_session(session)
        except StripeIntegrationError:
            # Stripe refuses to expire a session that is not open (paid, or expired already).
            state = await self.retrieve_checkout_session(session_id)
            if state.status == "open":
                raise
            return state

    async def create_billing_portal_session(self, *, customer_id: str, return_url: str) -> str:
        """The URL of a short-lived billing portal session for the customer. Not keyed: each
        call is a new session, and nothing is charged or created by opening one."""
        async with translated_errors():
            session = plain(
                await self._stripe.billing_portal.sessions.create_async(
                    {"customer": customer_id, "return_url": return_url}
                )
            )
        return str(session["url"])
