"""Stripe's objects (plain dicts, in the pinned API version's shapes) read into our types.

Webhook payloads are read with these too: a handler parses its event's object once and hands
the typed value on.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from app.stripe_gateway.fields import (
    expandable_id,
    from_timestamp,
    integer,
    metadata,
    minor_units,
    nested,
    text,
)
from app.stripe_gateway.types import (
    AccountState,
    ChargeState,
    CheckoutSessionState,
    CustomerState,
    DisputeState,
    InvoiceItemState,
    InvoiceLineState,
    InvoicePaymentOutcome,
    InvoicePreview,
    InvoiceState,
    PaymentMethodCard,
    PriceState,
    ProductState,
    RefundState,
    ScheduleState,
    SetupIntentState,
    StripeEventEnvelope,
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
        pending_invoice_item_interval=nested(
            subscription, "pending_invoice_item_interval", "interval"
        ),
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
    following = phases[1] if len(phases) > 1 else {}
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
        # A released schedule no longer names its subscription: Stripe moves the id to
        # `released_subscription`.
        subscription_id=expandable_id(
            schedule.get("subscription") or schedule.get("released_subscription")
        ),
        current_phase_end=from_timestamp(current.get("end_date")),
        next_phase_price_ids=tuple(
            expandable_id(item.get("price")) or "" for item in following.get("items") or []
        ),
    )


def _invoice_line(line: StripeDict) -> InvoiceLineState:
    item_details = nested(line, "parent", "subscription_item_details")
    return InvoiceLineState(
        price_id=expandable_id(nested(line, "pricing", "price_details", "price")),
        for_subscription_item=isinstance(item_details, Mapping),
        proration=bool(nested(item_details, "proration")),
        period_start=from_timestamp(nested(line, "period", "start")),
        period_end=from_timestamp(nested(line, "period", "end")),
        metadata=metadata(line.get("metadata")),
    )


def parse_invoice(invoice: StripeDict) -> InvoiceState:
    """An invoice object (a webhook payload's, or one fetched or listed) as our type; raises
    ValueError for an amount that is not whole minor units."""
    return InvoiceState(
        id=str(invoice["id"]),
        customer_id=expandable_id(invoice.get("customer")),
        subscription_id=expandable_id(
            nested(invoice, "parent", "subscription_details", "subscription")
        ),
        status=text(invoice.get("status")),
        billing_reason=text(invoice.get("billing_reason")),
        currency=text(invoice.get("currency")) or "",
        total=minor_units(invoice.get("total")),
        amount_paid=minor_units(invoice.get("amount_paid")),
        amount_due=minor_units(invoice.get("amount_due")),
        number=text(invoice.get("number")),
        description=text(invoice.get("description")),
        hosted_invoice_url=text(invoice.get("hosted_invoice_url")),
        invoice_pdf_url=text(invoice.get("invoice_pdf")),
        created=from_timestamp(invoice.get("created")),
        period_start=from_timestamp(invoice.get("period_start")),
        period_end=from_timestamp(invoice.get("period_end")),
        attempt_count=integer(invoice.get("attempt_count")),
        metadata=metadata(invoice.get("metadata")),
        lines=tuple(_invoice_line(line) for line in nested(invoice, "lines", "data") or []),
    )


def parse_invoice_item(item: StripeDict) -> InvoiceItemState:
    return InvoiceItemState(
        id=str(item["id"]),
        invoice_id=expandable_id(item.get("invoice")),
        metadata=metadata(item.get("metadata")),
    )


def _refund(refund: StripeDict) -> RefundState:
    return RefundState(
        id=str(refund["id"]),
        amount=minor_units(refund.get("amount")),
        currency=text(refund.get("currency")),
        status=text(refund.get("status")),
        created=from_timestamp(refund.get("created")),
    )


def parse_charge(charge: StripeDict) -> ChargeState:
    """A charge object as our type; raises ValueError for an amount that is not whole minor
    units."""
    return ChargeState(
        id=str(charge["id"]),
        customer_id=expandable_id(charge.get("customer")),
        currency=text(charge.get("currency")) or "",
        amount_refunded=minor_units(charge.get("amount_refunded")),
        created=from_timestamp(charge.get("created")),
        invoice_id=expandable_id(charge.get("invoice")),
        refunds=tuple(_refund(refund) for refund in nested(charge, "refunds", "data") or []),
    )


def parse_dispute(dispute: StripeDict) -> DisputeState:
    return DisputeState(
        id=str(dispute["id"]),
        charge_id=expandable_id(dispute.get("charge")),
        amount=integer(dispute.get("amount")),
        currency=text(dispute.get("currency")),
        reason=text(dispute.get("reason")),
    )


def parse_customer(customer: StripeDict) -> CustomerState:
    return CustomerState(
        id=str(customer["id"]),
        dashboard_user_id=text(nested(customer, "metadata", "dashboard_user_id")),
        email=text(customer.get("email")),
        name=text(customer.get("name")),
        default_payment_method_id=expandable_id(
            nested(customer, "invoice_settings", "default_payment_method")
        ),
    )


def parse_checkout_session(checkout_session: StripeDict) -> CheckoutSessionState:
    metadata = checkout_session.get("metadata") or {}
    return CheckoutSessionState(
        id=str(checkout_session["id"]),
        status=str(checkout_session.get("status")),
        url=checkout_session.get("url"),
        customer_id=expandable_id(checkout_session.get("customer")),
        subscription_id=expandable_id(checkout_session.get("subscription")),
        expires_at=from_timestamp(checkout_session.get("expires_at")),
        metadata={str(key): str(value) for key, value in metadata.items()},
    )


def parse_setup_intent(setup_intent: StripeDict) -> SetupIntentState:
    payment_method = _expanded(setup_intent.get("payment_method"))
    return SetupIntentState(
        id=str(setup_intent["id"]),
        customer_id=expandable_id(setup_intent.get("customer")),
        payment_method_id=expandable_id(setup_intent.get("payment_method")),
        payment_method=parse_payment_method(payment_method) if payment_method is not None else None,
    )


class NotAStripeEvent(ValueError):
    """A body (signed, or listed by Stripe) that is not shaped like an event."""


# Stripe's `created` of any event we could be sent: from 2011 to well past our lifetime.
_CREATED_RANGE = (1_300_000_000, 10_000_000_000)


def parse_event(event: dict[str, Any]) -> StripeEventEnvelope:
    """An event as stored: its id, type, time, version and object; raises NotAStripeEvent
    for anything not shaped like one."""
    data_object = nested(event, "data", "object")
    created = integer(event.get("created"))
    event_id = text(event.get("id"))
    event_type = text(event.get("type"))
    if (
        event_id is None
        or event_type is None
        or not isinstance(data_object, Mapping)
        or created is None
        or not _CREATED_RANGE[0] <= created <= _CREATED_RANGE[1]
    ):
        raise NotAStripeEvent("The body is not a Stripe event.")
    moment = from_timestamp(created)
    assert moment is not None
    return StripeEventEnvelope(
        id=event_id,
        type=event_type,
        created=moment,
        api_version=text(event.get("api_version")),
        livemode=event.get("livemode") is True,
        object_type=text(data_object.get("object")),
        object_id=text(data_object.get("id")),
        payload=event,
    )


def event_object(payload: StripeDict | None) -> dict[str, Any] | None:
    """The object a stored event carries (`data.object`), as Stripe sent it; None once the
    payload is purged."""
    found = nested(payload, "data", "object")
    return found if isinstance(found, dict) else None


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
