"""A Stripe invoice read into `InvoiceDetails`: everything its PDF shows, every line included."""

from collections.abc import Mapping, Sequence
from typing import Any

from app.stripe_gateway.fields import (
    amount_or_zero,
    decimal,
    expandable_id,
    from_timestamp,
    integer,
    metadata,
    nested,
    text,
)
from app.stripe_gateway.types import (
    InvoiceDetails,
    InvoiceDiscountAmount,
    InvoiceLineDetails,
    InvoiceTaxAmount,
    PostalAddress,
)

# What an invoice's PDF names besides ids: the coupon behind each discount amount, and the
# account's tax ids as objects (type and value).
INVOICE_DOCUMENT_EXPANSIONS = ["total_discount_amounts.discount.source.coupon", "account_tax_ids"]


def tax_rate_ids(invoice: Mapping[str, Any]) -> list[str]:
    """The tax rates an invoice's taxes name, to be fetched for their names and percentages."""
    return sorted(
        {
            str(rate_id)
            for entry in invoice.get("total_taxes") or []
            if (rate_id := nested(entry, "tax_rate_details", "tax_rate"))
        }
    )


def _address(value: Any) -> PostalAddress | None:
    if not isinstance(value, Mapping):
        return None
    address = PostalAddress(
        line1=text(value.get("line1")),
        line2=text(value.get("line2")),
        city=text(value.get("city")),
        state=text(value.get("state")),
        postal_code=text(value.get("postal_code")),
        country=text(value.get("country")),
    )
    return address if address.lines() else None


def _invoice_line(line: Mapping[str, Any]) -> InvoiceLineDetails:
    parent = line.get("parent") or {}
    proration = bool(
        nested(parent, "subscription_item_details", "proration")
        or nested(parent, "invoice_item_details", "proration")
    )
    period = line.get("period") or {}
    return InvoiceLineDetails(
        id=str(line["id"]),
        description=text(line.get("description")),
        amount=amount_or_zero(line.get("amount")),
        quantity=integer(line.get("quantity")),
        unit_amount=decimal(nested(line, "pricing", "unit_amount_decimal")),
        price_id=expandable_id(nested(line, "pricing", "price_details", "price")),
        proration=proration,
        period_start=from_timestamp(period.get("start")),
        period_end=from_timestamp(period.get("end")),
        metadata=metadata(line.get("metadata")),
    )


def _discount_amount(entry: Mapping[str, Any]) -> InvoiceDiscountAmount:
    # Expanded: discount -> source.coupon; an id when Stripe did not expand it.
    coupon = nested(entry, "discount", "source", "coupon")
    coupon = coupon if isinstance(coupon, Mapping) else {}
    return InvoiceDiscountAmount(
        amount=amount_or_zero(entry.get("amount")),
        name=text(coupon.get("name")),
        percent_off=decimal(coupon.get("percent_off")),
    )


def _tax_amount(
    entry: Mapping[str, Any], rates: Mapping[str, Mapping[str, Any]]
) -> InvoiceTaxAmount:
    rate = rates.get(str(nested(entry, "tax_rate_details", "tax_rate") or ""), {})
    return InvoiceTaxAmount(
        amount=amount_or_zero(entry.get("amount")),
        taxable_amount=integer(entry.get("taxable_amount")),
        inclusive=entry.get("tax_behavior") == "inclusive",
        display_name=text(rate.get("display_name")),
        percentage=decimal(rate.get("percentage")),
        jurisdiction=text(rate.get("jurisdiction")),
        taxability_reason=text(entry.get("taxability_reason")),
    )


def parse_invoice_details(
    invoice: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]],
    tax_rates: Mapping[str, Mapping[str, Any]],
) -> InvoiceDetails:
    """An invoice (retrieved with `INVOICE_DOCUMENT_EXPANSIONS`), all its lines (the embedded
    ones and the pages after them) and the tax rates its taxes name, by id."""
    transitions = invoice.get("status_transitions") or {}
    return InvoiceDetails(
        id=str(invoice["id"]),
        number=text(invoice.get("number")),
        status=str(invoice.get("status") or ""),
        currency=str(invoice["currency"]).lower(),
        customer_id=expandable_id(invoice.get("customer")),
        customer_name=text(invoice.get("customer_name")),
        customer_email=text(invoice.get("customer_email")),
        customer_address=_address(invoice.get("customer_address")),
        customer_tax_ids=tuple(
            (str(tax_id.get("type") or ""), str(tax_id["value"]))
            for tax_id in invoice.get("customer_tax_ids") or []
            if isinstance(tax_id, Mapping) and tax_id.get("value")
        ),
        account_tax_ids=tuple(
            str(tax_id["value"])
            for tax_id in invoice.get("account_tax_ids") or []
            if isinstance(tax_id, Mapping) and tax_id.get("value")
        ),
        created=from_timestamp(invoice.get("created")),
        finalized_at=from_timestamp(transitions.get("finalized_at")),
        paid_at=from_timestamp(transitions.get("paid_at")),
        due_date=from_timestamp(invoice.get("due_date")),
        period_start=from_timestamp(invoice.get("period_start")),
        period_end=from_timestamp(invoice.get("period_end")),
        subtotal=amount_or_zero(invoice.get("subtotal")),
        total=amount_or_zero(invoice.get("total")),
        amount_paid=amount_or_zero(invoice.get("amount_paid")),
        amount_due=amount_or_zero(invoice.get("amount_due")),
        amount_remaining=amount_or_zero(invoice.get("amount_remaining")),
        starting_balance=amount_or_zero(invoice.get("starting_balance")),
        discounts=tuple(
            _discount_amount(entry)
            for entry in invoice.get("total_discount_amounts") or []
            if amount_or_zero(entry.get("amount"))
        ),
        taxes=tuple(_tax_amount(entry, tax_rates) for entry in invoice.get("total_taxes") or []),
        lines=tuple(_invoice_line(line) for line in lines),
        description=text(invoice.get("description")),
        metadata=metadata(invoice.get("metadata")),
    )
