"""Stripe's objects (plain dicts, in the pinned API version's shapes) read into our types.

Webhook payloads are read with these too: a handler parses its event's object once and hands
the typed value on.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from app.stripe_gateway.fields import expandable_id, from_timestamp, metadata, nested
from app.stripe_gateway.types import (
    AccountState,
    InvoicePaymentOutcome,
    InvoicePreview,
    PaymentMethodCard,
    PriceState,
    ProductState,
    ScheduleState,
    SubscriptionItemState,
    SubscriptionState,
    WebhookEndpointState,
)

StripeDict = Mapping[str, Any]


def _expanded(value: object) -> StripeDict | None:
    """An expandable field when Stripe expanded it; None when it is only an id."""
    return value if isinstance(value, Mapping) else None


def parse_subscription(subscription: StripeDict) -> SubscriptionState:
    """A subscription object (a webhook payload's, or one we fetched) as our type."""
    items = tuple(
        SubscriptionItemState(
            id=item["id"],
            price_id=expandable_id(item.get("price")) or "",
            quantity=int(item.get("quantity") or 1),
            current_period_start=from_timestamp(item.get("current_period_start")),
            current_period_end=from_timestamp(item.get("current_period_end")),
        )
        for item in (nested(subscription, "items", "data") or [])
    )
    latest_invoice = _expanded(subscription.get("latest_invoice"))
    setup_intent = _expanded(subscription.get("pending_setup_intent"))
    return SubscriptionState(
        id=subscription["id"],
        customer_id=expandable_id(subscription.get("customer")) or "",
        status=subscription["status"],
        items=items,
        trial_end=from_timestamp(subscription.get("trial_end")),
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
        canceled_at=from_timestamp(subscription.get("canceled_at")),
        ended_at=from_timestamp(subscription.get("ended_at")),
        schedule_id=expandable_id(subscription.get("schedule")),
        latest_invoice_id=expandable_id(subscription.get("latest_invoice")),
        latest_invoice_status=nested(latest_invoice, "status"),
        invoice_client_secret=nested(latest_invoice, "confirmation_secret", "client_secret"),
        setup_intent_client_secret=nested(setup_intent, "client_secret"),
        setup_intent_status=nested(setup_intent, "status"),
        has_pending_update=subscription.get("pending_update") is not None,
        metadata=metadata(subscription.get("metadata")),
        billing_cycle_anchor=from_timestamp(subscription.get("billing_cycle_anchor")),
    )


def parse_payment_method(payment_method: StripeDict) -> PaymentMethodCard:
    card = payment_method.get("card") or {}
    return PaymentMethodCard(
        id=payment_method["id"],
        customer_id=expandable_id(payment_method.get("customer")),
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def parse_price(price: StripeDict) -> PriceState:
    return PriceState(
        id=price["id"],
        product_id=expandable_id(price.get("product")) or "",
        unit_amount=price.get("unit_amount"),
        currency=price["currency"],
        interval=nested(price, "recurring", "interval"),
        lookup_key=price.get("lookup_key"),
        active=bool(price.get("active")),
        tax_behavior=price.get("tax_behavior"),
    )


def parse_product(product: StripeDict) -> ProductState:
    return ProductState(
        id=product["id"],
        name=product["name"],
        active=bool(product.get("active")),
        tax_code=expandable_id(product.get("tax_code")),
        metadata=metadata(product.get("metadata")),
    )


def parse_schedule(schedule: StripeDict) -> ScheduleState:
    phases = schedule.get("phases") or []
    current = phases[0] if phases else {}
    return ScheduleState(
        id=schedule["id"],
        status=schedule.get("status") or "",
        phase_bounds=tuple(
            (int(phase.get("start_date") or 0), phase.get("end_date")) for phase in phases
        ),
        current_phase_items=tuple(
            (expandable_id(item.get("price")) or "", int(item.get("quantity") or 1))
            for item in current.get("items") or []
        ),
    )


def parse_invoice_preview(invoice: StripeDict) -> InvoicePreview:
    proration = sum(
        int(line.get("amount") or 0)
        for line in nested(invoice, "lines", "data") or []
        if nested(line, "parent", "subscription_item_details", "proration")
    )
    return InvoicePreview(
        currency=invoice["currency"],
        total=int(invoice.get("total") or 0),
        proration_amount=proration,
        next_payment_attempt=from_timestamp(invoice.get("next_payment_attempt")),
        period_end=from_timestamp(invoice.get("period_end")),
    )


def parse_payment_outcome(invoice_payments: Sequence[StripeDict]) -> InvoicePaymentOutcome:
    """The latest of an invoice's payments (listed with `payment.payment_intent` expanded)."""
    if not invoice_payments:
        return InvoicePaymentOutcome(None, None, None)
    # Stripe lists newest first; `created` has one-second resolution, so on a tie the
    # list order decides.
    latest = max(
        enumerate(invoice_payments), key=lambda pair: (pair[1].get("created") or 0, -pair[0])
    )[1]
    payment_intent = _expanded(nested(latest, "payment", "payment_intent"))
    if payment_intent is None:
        return InvoicePaymentOutcome(None, None, None)
    error = payment_intent.get("last_payment_error") or {}
    return InvoicePaymentOutcome(
        payment_intent_status=payment_intent.get("status"),
        decline_code=error.get("decline_code") or error.get("code"),
        failure_message=error.get("message"),
    )


def parse_account(account: StripeDict) -> AccountState:
    return AccountState(
        id=account["id"],
        livemode=bool(account.get("livemode", False)),
        display_name=nested(account, "settings", "dashboard", "display_name"),
    )


def parse_webhook_endpoint(endpoint: StripeDict) -> WebhookEndpointState:
    return WebhookEndpointState(
        id=endpoint["id"],
        url=endpoint["url"],
        api_version=endpoint.get("api_version"),
        status=endpoint.get("status") or "",
        enabled_events=tuple(endpoint.get("enabled_events") or ()),
    )
