"""What the gateway returns: our own types, so no stripe object leaks into the domains.

Shapes follow the pinned API version: a subscription's billing period is on its items, and an
invoice's payments are `invoice_payments`, not a `payment_intent` field.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

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
    # How often Stripe invoices the subscription's pending items ("month"); None: at renewals.
    pending_invoice_item_interval: str | None = None

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
class InvoiceCollection:
    """What one attempt of ours to collect an open invoice came to: `paid`; `declined` (with
    Stripe's decline code); `action_required` (the customer must authenticate: SCA);
    `not_open` (paid, voided or uncollectible meanwhile: nothing was attempted)."""

    outcome: Literal["paid", "declined", "action_required", "not_open"]
    invoice_status: str | None
    decline_code: str | None = None
    hosted_invoice_url: str | None = None


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
    # The subscription it changes; once released, the one it released.
    subscription_id: str | None
    current_phase_end: datetime | None
    # The prices of the phase after the current one (none without one).
    next_phase_price_ids: tuple[str, ...]


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


@dataclass(frozen=True, slots=True)
class InvoiceLineState:
    """One line of an invoice, as the billing rules read it."""

    price_id: str | None
    # Billed for a subscription item (the plan or an add-on), not for an invoice item.
    for_subscription_item: bool
    # A subscription item's proration (`parent.subscription_item_details.proration`).
    proration: bool
    period_start: datetime | None
    period_end: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvoiceState:
    """An invoice as Stripe holds it: a webhook's, one fetched, or one listed. Its `lines` are
    those the object embeds (the first page: `lines.has_more` may say there are more)."""

    id: str
    customer_id: str | None = None
    # `parent.subscription_details.subscription`: the subscription it bills, if any.
    subscription_id: str | None = None
    status: str | None = None
    billing_reason: str | None = None
    currency: str = ""
    total: int = 0
    amount_paid: int = 0
    amount_due: int = 0
    number: str | None = None
    description: str | None = None
    hosted_invoice_url: str | None = None
    invoice_pdf_url: str | None = None
    created: datetime | None = None
    # The invoice's own period: for a subscription's invoice, the window its pending items
    # were collected in (the lines say which period is billed).
    period_start: datetime | None = None
    period_end: datetime | None = None
    attempt_count: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    lines: tuple[InvoiceLineState, ...] = ()


@dataclass(frozen=True, slots=True)
class InvoiceItemState:
    id: str
    # The invoice holding it; None while it is pending.
    invoice_id: str | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class RefundState:
    id: str
    amount: int
    currency: str | None
    status: str | None
    created: datetime | None


@dataclass(frozen=True, slots=True)
class ChargeState:
    id: str
    customer_id: str | None
    currency: str
    amount_refunded: int
    created: datetime | None
    # `invoice` left the charge in basil; an older payload, or an expanded one, still names it.
    invoice_id: str | None
    # Only on a charge fetched with `expand=["refunds"]`: webhook payloads no longer carry
    # them (since 2022-11-15).
    refunds: tuple[RefundState, ...]


@dataclass(frozen=True, slots=True)
class DisputeState:
    id: str
    charge_id: str | None
    amount: int | None
    currency: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class CustomerState:
    id: str
    # Our own mark (metadata), on the customers this service or the old module created.
    dashboard_user_id: str | None
    email: str | None
    name: str | None
    default_payment_method_id: str | None


@dataclass(frozen=True, slots=True)
class SetupIntentState:
    id: str
    customer_id: str | None
    payment_method_id: str | None
    # The card itself when the payload carries it expanded.
    payment_method: PaymentMethodCard | None


@dataclass(frozen=True, slots=True)
class StripeEventEnvelope:
    """A Stripe event, delivered or listed: what is stored beside its payload."""

    id: str
    type: str
    created: datetime
    api_version: str | None
    livemode: bool
    # The `object` and `id` of `data.object`.
    object_type: str | None
    object_id: str | None
    # The event exactly as Stripe sent it, stored as JSON.
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckoutSessionState:
    """A Checkout Session: `open` while the customer may pay on its `url`, then `complete`
    (with the subscription it created) or `expired`."""

    id: str
    status: str
    url: str | None
    customer_id: str | None
    subscription_id: str | None
    expires_at: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
