"""What the gateway returns: our own types, so no stripe object leaks into the domains.

Shapes follow the pinned API version: a subscription's billing period is on its items, and an
invoice's payments are `invoice_payments`, not a `payment_intent` field.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

BillingInterval = Literal["month", "year"]


@dataclass(frozen=True, slots=True)
class SubscriptionItemState:
    id: str
    price_id: str
    quantity: int
    current_period_start: datetime | None
    current_period_end: datetime | None


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    id: str
    customer_id: str
    status: str
    items: tuple[SubscriptionItemState, ...]
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    schedule_id: str | None
    latest_invoice_id: str | None
    latest_invoice_status: str | None
    # Stripe.js confirms the first payment with this (latest_invoice.confirmation_secret).
    invoice_client_secret: str | None
    # During a trial there is no payment: a card that needs SCA is confirmed through this.
    setup_intent_client_secret: str | None
    setup_intent_status: str | None
    has_pending_update: bool
    metadata: dict[str, str] = field(default_factory=dict)
    billing_cycle_anchor: datetime | None = None

    def item_for_price(self, price_ids: set[str]) -> SubscriptionItemState | None:
        return next((item for item in self.items if item.price_id in price_ids), None)

    @property
    def current_period_start(self) -> datetime | None:
        starts = [item.current_period_start for item in self.items if item.current_period_start]
        return min(starts) if starts else None

    @property
    def current_period_end(self) -> datetime | None:
        ends = [item.current_period_end for item in self.items if item.current_period_end]
        return max(ends) if ends else None


@dataclass(frozen=True, slots=True)
class InvoicePaymentOutcome:
    """The state of the latest attempt to pay an invoice."""

    payment_intent_status: str | None
    decline_code: str | None
    failure_message: str | None


@dataclass(frozen=True, slots=True)
class PaymentMethodCard:
    id: str
    customer_id: str | None
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True, slots=True)
class InvoicePreview:
    currency: str
    total: int
    # The part of `total` that comes from prorations of the change itself.
    proration_amount: int
    next_payment_attempt: datetime | None
    period_end: datetime | None


@dataclass(frozen=True, slots=True)
class PriceState:
    id: str
    product_id: str
    unit_amount: int | None
    currency: str
    interval: str | None
    lookup_key: str | None
    active: bool
    tax_behavior: str | None


@dataclass(frozen=True, slots=True)
class ProductState:
    id: str
    name: str
    active: bool
    tax_code: str | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class ScheduleState:
    id: str
    status: str
    # (start, end) of each phase, as Stripe holds them.
    phase_bounds: tuple[tuple[int, int | None], ...]
    current_phase_items: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class AccountState:
    id: str
    livemode: bool
    display_name: str | None


@dataclass(frozen=True, slots=True)
class WebhookEndpointState:
    id: str
    url: str
    api_version: str | None
    status: str
    enabled_events: tuple[str, ...]


_CITY_STATE_POSTAL_COUNTRIES = frozenset({"US", "CA", "AU"})


@dataclass(frozen=True, slots=True)
class PostalAddress:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None

    def lines(self) -> list[str]:
        """The address as printed: street lines, locality, country. The locality is
        "City, ST 12345" in countries that write it so, "12345 City" elsewhere."""
        if self.country in _CITY_STATE_POSTAL_COUNTRIES:
            city_state = ", ".join(part for part in (self.city, self.state) if part)
            locality = " ".join(part for part in (city_state, self.postal_code) if part)
        else:
            locality = " ".join(part for part in (self.postal_code, self.city) if part)
            if self.state:
                locality = f"{locality}, {self.state}" if locality else self.state
        return [line for line in (self.line1, self.line2, locality, self.country) if line]


@dataclass(frozen=True, slots=True)
class InvoiceLineDetails:
    """One line of a Stripe invoice (`pricing.price_details`, `parent.*.proration`)."""

    id: str
    description: str | None
    # Minor units, before discounts and exclusive taxes.
    amount: int
    quantity: int | None
    # Minor units per unit (`pricing.unit_amount_decimal`), exact.
    unit_amount: Decimal | None
    price_id: str | None
    proration: bool
    period_start: datetime | None
    period_end: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvoiceDiscountAmount:
    amount: int
    # The coupon's name (or the promotion code) when Stripe has one.
    name: str | None
    percent_off: Decimal | None


@dataclass(frozen=True, slots=True)
class InvoiceTaxAmount:
    amount: int
    taxable_amount: int | None
    inclusive: bool
    # From the tax rate, when the tax has one (`tax_rate_details`): "VAT", 19, "DE".
    display_name: str | None
    percentage: Decimal | None
    jurisdiction: str | None
    taxability_reason: str | None


@dataclass(frozen=True, slots=True)
class InvoiceDetails:
    """A Stripe invoice with everything its PDF shows, every line included."""

    id: str
    number: str | None
    status: str
    currency: str
    customer_id: str | None
    customer_name: str | None
    customer_email: str | None
    customer_address: PostalAddress | None
    # (type, value): ("eu_vat", "DE123456789").
    customer_tax_ids: tuple[tuple[str, str], ...]
    account_tax_ids: tuple[str, ...]
    created: datetime | None
    finalized_at: datetime | None
    paid_at: datetime | None
    due_date: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    subtotal: int
    total: int
    amount_paid: int
    amount_due: int
    amount_remaining: int
    starting_balance: int
    discounts: tuple[InvoiceDiscountAmount, ...]
    taxes: tuple[InvoiceTaxAmount, ...]
    lines: tuple[InvoiceLineDetails, ...]
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
