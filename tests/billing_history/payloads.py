"""Stripe invoices, charges and refunds for the billing-history tests, built from Stripe's
example objects in today's shapes (API version 2026-10-28.endive)."""

from datetime import UTC, datetime
from typing import Any

from tests.stripe.fixtures import stripe_fixture

PLAN_PRICE = "price_plan_growth_monthly"
ADD_ON_PRICE = "price_addon_agents_monthly"
ADD_ON_PRICES = {ADD_ON_PRICE, "price_addon_agents_yearly"}

PERIOD_START = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
PERIOD_END = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
CREATED = int(datetime(2026, 11, 1, 0, 5, tzinfo=UTC).timestamp())


def invoice_line(
    amount: int,
    *,
    price: str = PLAN_PRICE,
    proration: bool = False,
    start: int = PERIOD_START,
    end: int = PERIOD_END,
) -> dict[str, Any]:
    line = stripe_fixture("line_item")
    line.update(
        amount=amount,
        subtotal=amount,
        period={"start": start, "end": end},
        parent={
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": "sub_test",
                "subscription_item": "si_test",
            },
        },
        pricing={
            "type": "price_details",
            "price_details": {"price": price, "product": "prod_test"},
            "unit_amount_decimal": str(amount),
        },
    )
    return line


def invoice_payload(
    invoice_id: str = "in_test_1",
    *,
    status: str = "open",
    lines: list[dict[str, Any]] | None = None,
    billing_reason: str = "subscription_cycle",
    **overrides: Any,
) -> dict[str, Any]:
    lines = [invoice_line(9_900)] if lines is None else lines
    total = sum(int(line["amount"]) for line in lines)
    invoice = stripe_fixture("invoice")
    # Gone since basil: the subscription is under `parent`, payment is `status == "paid"`.
    for removed in ("subscription", "paid", "payment_intent"):
        invoice.pop(removed, None)
    invoice.update(
        id=invoice_id,
        status=status,
        billing_reason=billing_reason,
        created=CREATED,
        currency="usd",
        total=total,
        subtotal=total,
        amount_due=total,
        amount_paid=total if status == "paid" else 0,
        amount_remaining=0 if status == "paid" else total,
        number="ACME-0001",
        description=None,
        hosted_invoice_url=f"https://invoice.stripe.com/i/{invoice_id}",
        invoice_pdf=f"https://pay.stripe.com/invoice/{invoice_id}/pdf",
        period_start=PERIOD_START - 30 * 86_400,
        period_end=PERIOD_START,
        metadata={},
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": "sub_test"},
        },
        lines={"object": "list", "data": lines, "has_more": False, "url": "/v1/lines"},
    )
    invoice.update(overrides)
    return invoice


def refund_payload(
    refund_id: str, *, amount: int, created: int = CREATED, status: str = "succeeded"
) -> dict[str, Any]:
    refund = stripe_fixture("refund")
    refund.update(id=refund_id, amount=amount, created=created, status=status, currency="usd")
    return refund


def charge_payload(
    charge_id: str = "ch_test_1",
    *,
    amount_refunded: int,
    refunds: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A charge; without `refunds` it has no `refunds` field, as in today's webhooks."""
    charge = stripe_fixture("charge")
    charge.update(
        id=charge_id,
        amount=9_900,
        amount_captured=9_900,
        amount_refunded=amount_refunded,
        refunded=amount_refunded == 9_900,
        created=CREATED,
        currency="usd",
        **overrides,
    )
    if refunds is None:
        charge.pop("refunds")
    else:
        charge["refunds"] = {"object": "list", "data": refunds, "has_more": False}
    return charge
