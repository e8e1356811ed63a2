"""What an invoice PDF says, as the JSON document the Typst template lays out.

Every amount is a Stripe integer of minor units turned into text here, once, through
`Money` and `format_money` (the currency's own decimals and the configured locale); rates
(minor units, possibly fractional) through `format_minor_unit_rate`, unrounded. Dates are
written in the locale's medium format, in UTC (Stripe's invoice dates are UTC instants).

Line kinds, in this order: `Overage` (our own metadata on the line: `billing_type=overage`),
`Proration` (`parent.*.proration`), `Add-on` (priced with an add-on's Stripe price), `Plan`
(any other subscription price), and no kind for anything else (a one-off item).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal

from app.core.money import Money, format_minor_unit_rate, format_money
from app.invoices.branding import SellerBranding
from app.stripe_gateway.types import InvoiceDetails, InvoiceLineDetails

_STATUS_LABELS = {"open": "Open", "paid": "Paid", "uncollectible": "Uncollectible"}
_LABELS = {
    "bill_to": "Bill to",
    "tax_id": "Tax ID",
    "page": "Page",
}
_COLUMNS = ["Description", "Quantity", "Unit price", "Amount"]
_TAX_ID_NAMES = {"eu_vat": "VAT", "gb_vat": "VAT", "us_ein": "EIN"}
_OVERAGE_UNITS = {"minutes": ("min", "minute"), "agents": ("agents", "agent")}


@dataclass(frozen=True, slots=True)
class OverageLineTerms:
    """What our overage charge says about one of its lines: the quantity over the limit and
    the rate it was charged at (None on charges made before rates were recorded)."""

    quantity: Decimal
    rate: Decimal | None


@dataclass(frozen=True, slots=True)
class LineLookups:
    add_on_price_ids: frozenset[str]
    # (overage charge id, "minutes" | "agents") -> terms.
    overage_terms: Mapping[tuple[int, str], OverageLineTerms]


@dataclass(frozen=True, slots=True)
class CustomerFallback:
    """Our own record of the customer, for what Stripe's invoice leaves empty."""

    name: str | None
    email: str | None


def overage_line_key(line: InvoiceLineDetails) -> tuple[int, str] | None:
    """(charge id, line) of an overage line we created, from its metadata; None otherwise."""
    charge_id = line.metadata.get("overage_charge_id", "")
    which = line.metadata.get("overage_line", "")
    if charge_id.isascii() and charge_id.isdigit() and which in _OVERAGE_UNITS:
        return int(charge_id), which
    return None


def invoice_content(
    invoice: InvoiceDetails,
    branding: SellerBranding,
    *,
    customer: CustomerFallback,
    lookups: LineLookups,
    locale: str,
    as_of: datetime,
) -> dict[str, Any]:
    """The template's input for `invoice` (final: it has a number)."""
    currency = invoice.currency

    def money(amount: int) -> str:
        return format_money(Money(amount, currency), locale)

    def day(moment: datetime) -> str:
        return format_date(moment.date(), format="medium", locale=locale)

    number = branding.invoice_number(invoice.number or invoice.id)
    facts = [{"label": "Invoice number", "value": number}]
    issued = invoice.finalized_at or invoice.created
    if issued is not None:
        facts.append({"label": "Date of issue", "value": day(issued)})
    if invoice.due_date is not None:
        facts.append({"label": "Due date", "value": day(invoice.due_date)})
    period = _service_period(invoice)
    if period is not None:
        facts.append({"label": "Service period", "value": _day_range(*period, day)})
    facts.append({"label": "Currency", "value": currency.upper()})

    return {
        "lang": locale.split("_")[0],
        "document_title": f"Invoice {number}",
        "title": "Invoice",
        "number": number,
        "labels": _LABELS,
        "brand": {
            "name": branding.company_name,
            "address_lines": list(branding.address_lines),
            "tax_id": branding.tax_id,
            "color": branding.primary_color,
            "footer": branding.footer_text,
        },
        "customer": {
            "name": invoice.customer_name or customer.name or invoice.customer_email or "",
            "email": invoice.customer_email or customer.email,
            "address_lines": invoice.customer_address.lines() if invoice.customer_address else [],
            "tax_ids": [
                f"{_TAX_ID_NAMES.get(kind, kind.replace('_', ' ').upper())} {value}"
                for kind, value in invoice.customer_tax_ids
            ],
        },
        "facts": facts,
        "status": _status(invoice, money, day),
        "columns": _COLUMNS,
        "lines": [
            _line(line, currency=currency, locale=locale, lookups=lookups, day=day)
            for line in invoice.lines
        ],
        "totals": _totals(invoice, money),
        "notes": [
            f"Payment status as of {day(as_of)}.",
            f"All amounts in {currency.upper()}.",
        ],
    }


def _status(invoice: InvoiceDetails, money: Any, day: Any) -> dict[str, str | None]:
    label = _STATUS_LABELS.get(invoice.status, invoice.status.title())
    detail = None
    if invoice.status == "paid" and invoice.paid_at is not None:
        detail = f"Paid on {day(invoice.paid_at)}"
    elif invoice.status == "open":
        detail = f"{money(invoice.amount_remaining)} due"
        if invoice.due_date is not None:
            detail += f" by {day(invoice.due_date)}"
    return {"label": label, "detail": detail}


def _service_period(invoice: InvoiceDetails) -> tuple[datetime, datetime] | None:
    # The lines' periods, not the invoice's own: a renewal's period_start/end is the window
    # its pending items were collected in (the previous period).
    starts = [line.period_start for line in invoice.lines if line.period_start]
    ends = [line.period_end for line in invoice.lines if line.period_end]
    if starts and ends:
        return min(starts), max(ends)
    if invoice.period_start and invoice.period_end:
        return invoice.period_start, invoice.period_end
    return None


def _day_range(start: datetime, end: datetime, day: Any) -> str:
    first, last = day(start), day(end)
    return first if first == last else f"{first} \N{EN DASH} {last}"


def _kind(line: InvoiceLineDetails, lookups: LineLookups) -> str | None:
    if line.metadata.get("billing_type") == "overage" or overage_line_key(line) is not None:
        return "Overage"
    if line.proration:
        return "Proration"
    if line.price_id is not None and line.price_id in lookups.add_on_price_ids:
        return "Add-on"
    if line.price_id is not None:
        return "Plan"
    return None


def _line(
    line: InvoiceLineDetails, *, currency: str, locale: str, lookups: LineLookups, day: Any
) -> dict[str, str | None]:
    kind = _kind(line, lookups)
    quantity = format_decimal(line.quantity, locale=locale) if line.quantity is not None else ""
    # A proration's amount is a part of the price for a part of the period: the price itself
    # beside it would not multiply out to the amount, so none is shown.
    rate = (
        format_minor_unit_rate(line.unit_amount, currency, locale)
        if line.unit_amount is not None and not line.proration
        else ""
    )
    key = overage_line_key(line)
    terms = lookups.overage_terms.get(key) if key is not None else None
    if key is not None and terms is not None:
        # Our invoice items carry only an amount: the quantity and rate are our charge's.
        plural, singular = _OVERAGE_UNITS[key[1]]
        quantity = f"{format_decimal(terms.quantity.normalize(), locale=locale)} {plural}"
        rate = (
            f"{format_minor_unit_rate(terms.rate, currency, locale)} / {singular}"
            if terms.rate is not None
            else ""
        )
    period = None
    if line.period_start is not None and line.period_end is not None:
        period = _day_range(line.period_start, line.period_end, day)
    return {
        "description": line.description or kind or "Item",
        "kind": kind,
        "period": period,
        "quantity": quantity,
        "rate": rate,
        "amount": format_money(Money(line.amount, currency), locale),
    }


def _totals(invoice: InvoiceDetails, money: Any) -> list[dict[str, Any]]:
    totals: list[dict[str, Any]] = [
        {"label": "Subtotal", "amount": money(invoice.subtotal), "emphasis": False}
    ]
    for discount in invoice.discounts:
        label = "Discount"
        details = [part for part in (discount.name, _percent(discount.percent_off, "off")) if part]
        if details:
            label += f" ({', '.join(details)})"
        totals.append({"label": label, "amount": money(-discount.amount), "emphasis": False})
    for tax in invoice.taxes:
        label = tax.display_name or "Tax"
        if tax.percentage is not None:
            label += f" {_percent(tax.percentage)}"
        if tax.jurisdiction:
            label += f" ({tax.jurisdiction})"
        if tax.inclusive:
            label += ", included"
        if tax.taxable_amount is not None:
            label += f" on {money(tax.taxable_amount)}"
        totals.append({"label": label, "amount": money(tax.amount), "emphasis": False})
    totals.append({"label": "Total", "amount": money(invoice.total), "emphasis": True})
    applied_balance = invoice.amount_due - invoice.total
    if applied_balance:
        totals.append(
            {"label": "Applied balance", "amount": money(applied_balance), "emphasis": False}
        )
    if invoice.amount_paid:
        totals.append(
            {"label": "Amount paid", "amount": money(invoice.amount_paid), "emphasis": False}
        )
    totals.append(
        {
            "label": "Amount due",
            "amount": money(invoice.amount_remaining),
            "emphasis": invoice.status == "open",
        }
    )
    return totals


def _percent(value: Decimal | None, suffix: str = "") -> str | None:
    if value is None:
        return None
    text = f"{value.normalize():f}%"
    return f"{text} {suffix}" if suffix else text
