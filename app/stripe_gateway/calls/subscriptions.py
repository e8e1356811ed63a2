"""Subscriptions, their items, their first invoice's payment, and schedules (changes at the
period end)."""

import stripe

from app.stripe_gateway.calls.base import Params, StripeCalls, plain
from app.stripe_gateway.fields import nested
from app.stripe_gateway.parsing import (
    parse_invoice_preview,
    parse_payment_outcome,
    parse_schedule,
    parse_subscription,
)
from app.stripe_gateway.translation import translated_errors
from app.stripe_gateway.types import (
    InvoicePaymentOutcome,
    InvoicePreview,
    ScheduleState,
    SubscriptionState,
)

SUBSCRIPTION_EXPANSIONS = ["latest_invoice.confirmation_secret", "pending_setup_intent"]


def subscription_terms(
    *, metadata: dict[str, str], trial_days: int, pending_invoice_item_interval: str | None
) -> Params:
    """The terms every subscription we create carries, whether created here or by a
    Checkout Session (its `subscription_data`)."""
    terms: Params = {
        "metadata": metadata,
        # Flexible billing mode bases credit prorations on what was actually paid, so an
        # upgrade followed by a downgrade never credits more than the customer paid.
        "billing_mode": {"type": "flexible"},
    }
    if trial_days > 0:
        terms["trial_period_days"] = trial_days
    if pending_invoice_item_interval is not None:
        # A yearly subscription invoices only once a year; with this, Stripe invoices its
        # pending items (the monthly overage) every interval instead of at the renewal.
        terms["pending_invoice_item_interval"] = {"interval": pending_invoice_item_interval}
    return terms


class SubscriptionCalls(StripeCalls):
    async def create_subscription(
        self,
        *,
        customer_id: str,
        items: list[tuple[str, int]],
        trial_days: int,
        metadata: dict[str, str],
        idempotency_key: str,
        pending_invoice_item_interval: str | None = None,
    ) -> SubscriptionState:
        params: Params = {
            "customer": customer_id,
            "items": [{"price": price, "quantity": quantity} for price, quantity in items],
            # Charge the card now; a decline or SCA leaves the subscription `incomplete`
            # with its open invoice, instead of failing the request.
            "payment_behavior": "allow_incomplete",
            # No subscription-level card: invoices charge the customer's default card, so
            # "make default" in payment-methods/ is what renewals use.
            **subscription_terms(
                metadata=metadata,
                trial_days=trial_days,
                pending_invoice_item_interval=pending_invoice_item_interval,
            ),
            "expand": SUBSCRIPTION_EXPANSIONS,
        }
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        async with translated_errors():
            subscription = plain(
                await self._stripe.subscriptions.create_async(
                    params, self._options(idempotency_key)
                )
            )
        return parse_subscription(subscription)

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState:
        async with translated_errors():
            subscription = plain(
                await self._stripe.subscriptions.retrieve_async(
                    subscription_id, {"expand": SUBSCRIPTION_EXPANSIONS}
                )
            )
        return parse_subscription(subscription)

    async def find_subscription(self, subscription_id: str) -> SubscriptionState | None:
        """A subscription as Stripe holds it now, nothing expanded; None if Stripe has none."""
        subscription = await self._retrieve_or_none(self._stripe.subscriptions, subscription_id)
        return parse_subscription(subscription) if subscription is not None else None

    async def find_subscription_by_metadata(
        self, *, customer_id: str, key: str, value: str
    ) -> SubscriptionState | None:
        """A subscription we created for a reservation, if an earlier attempt got that far."""
        async with translated_errors():
            page = plain(
                await self._stripe.subscriptions.list_async(
                    {"customer": customer_id, "status": "all", "limit": 100}
                )
            )
        for subscription in page["data"]:
            if nested(subscription, "metadata", key) == value:
                return await self.retrieve_subscription(subscription["id"])
        return None

    async def latest_payment_outcome(self, *, invoice_id: str) -> InvoicePaymentOutcome:
        """How the last attempt to pay an invoice went (declined, needs SCA, succeeded)."""
        async with translated_errors():
            page = plain(
                await self._stripe.invoice_payments.list_async(
                    {"invoice": invoice_id, "expand": ["data.payment.payment_intent"], "limit": 10}
                )
            )
        return parse_payment_outcome(page["data"])

    async def pay_invoice(
        self, *, invoice_id: str, payment_method_id: str, idempotency_key: str
    ) -> str:
        """Pay an open invoice with a given card; returns the invoice's status."""
        async with translated_errors():
            invoice = plain(
                await self._stripe.invoices.pay_async(
                    invoice_id,
                    {"payment_method": payment_method_id},
                    self._options(idempotency_key),
                )
            )
        return str(invoice["status"])

    async def update_subscription(
        self, *, subscription_id: str, params: Params, idempotency_key: str
    ) -> SubscriptionState:
        async with translated_errors():
            subscription = plain(
                await self._stripe.subscriptions.update_async(
                    subscription_id,
                    {**params, "expand": SUBSCRIPTION_EXPANSIONS},
                    self._options(idempotency_key),
                )
            )
        return parse_subscription(subscription)

    async def cancel_subscription_now(
        self, *, subscription_id: str, idempotency_key: str
    ) -> SubscriptionState:
        async with translated_errors():
            subscription = plain(
                await self._stripe.subscriptions.cancel_async(
                    subscription_id, {"prorate": False}, self._options(idempotency_key)
                )
            )
        return parse_subscription(subscription)

    async def add_subscription_item(
        self, *, subscription_id: str, price_id: str, quantity: int, idempotency_key: str
    ) -> str:
        async with translated_errors():
            item = plain(
                await self._stripe.subscription_items.create_async(
                    {
                        "subscription": subscription_id,
                        "price": price_id,
                        "quantity": quantity,
                        # An add-on is charged now, and only granted if that charge succeeds.
                        "proration_behavior": "always_invoice",
                        "payment_behavior": "pending_if_incomplete",
                    },
                    self._options(idempotency_key),
                )
            )
        return str(item["id"])

    async def update_subscription_item(
        self, *, item_id: str, quantity: int, idempotency_key: str, charge_now: bool
    ) -> None:
        params: Params = {"quantity": quantity}
        if charge_now:
            params.update(
                proration_behavior="always_invoice", payment_behavior="pending_if_incomplete"
            )
        else:
            params.update(proration_behavior="create_prorations")
        async with translated_errors():
            await self._stripe.subscription_items.update_async(
                item_id, params, self._options(idempotency_key)
            )

    async def remove_subscription_item(self, *, item_id: str, idempotency_key: str) -> None:
        async with translated_errors():
            # The unused time becomes a credit on the next invoice.
            await self._stripe.subscription_items.delete_async(
                item_id, {"proration_behavior": "create_prorations"}, self._options(idempotency_key)
            )

    async def preview_change(
        self,
        *,
        customer_id: str,
        subscription_id: str,
        items: list[Params],
        proration_date: int,
    ) -> InvoicePreview:
        """The next invoice if the change were made at `proration_date`."""
        async with translated_errors():
            invoice = plain(
                await self._stripe.invoices.create_preview_async(
                    {
                        "customer": customer_id,
                        "subscription": subscription_id,
                        "subscription_details": {
                            "items": items,
                            "proration_date": proration_date,
                            "proration_behavior": "create_prorations",
                        },
                    }
                )
            )
        return parse_invoice_preview(invoice)

    # --- subscription schedules (changes at the period end) ----------------------------

    async def create_schedule_from_subscription(
        self, *, subscription_id: str, idempotency_key: str
    ) -> ScheduleState:
        async with translated_errors():
            schedule = plain(
                await self._stripe.subscription_schedules.create_async(
                    {"from_subscription": subscription_id}, self._options(idempotency_key)
                )
            )
        return parse_schedule(schedule)

    async def schedule_change_at_period_end(
        self,
        *,
        schedule_id: str,
        current_phase_start: int,
        period_end: int,
        current_items: list[tuple[str, int]],
        next_items: list[tuple[str, int]],
        next_interval: str,
        idempotency_key: str,
    ) -> ScheduleState:
        """Keep the current phase until the period ends, then one phase of the new price,
        after which the schedule releases the subscription to renew on its own."""
        params: Params = {
            "end_behavior": "release",
            "proration_behavior": "none",
            "phases": [
                {
                    "items": [{"price": p, "quantity": q} for p, q in current_items],
                    "start_date": current_phase_start,
                    "end_date": period_end,
                },
                {
                    "items": [{"price": p, "quantity": q} for p, q in next_items],
                    "duration": {"interval": next_interval, "interval_count": 1},
                },
            ],
        }
        async with translated_errors():
            schedule = plain(
                await self._stripe.subscription_schedules.update_async(
                    schedule_id, params, self._options(idempotency_key)
                )
            )
        return parse_schedule(schedule)

    async def retrieve_schedule(self, schedule_id: str) -> ScheduleState:
        async with translated_errors():
            schedule = plain(await self._stripe.subscription_schedules.retrieve_async(schedule_id))
        return parse_schedule(schedule)

    async def release_schedule(self, *, schedule_id: str, idempotency_key: str) -> None:
        async with translated_errors():
            try:
                await self._stripe.subscription_schedules.release_async(
                    schedule_id, options=self._options(idempotency_key)
                )
            except stripe.InvalidRequestError as error:
                # Already released, completed or canceled: the goal (no schedule) holds.
                if not any(s in str(error) for s in ("released", "completed", "canceled")):
                    raise
