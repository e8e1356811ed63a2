"""The read shape of a billing-history row, whichever table holds it."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class BillingRecord:
    """One billing-history row as read from `billing_history` or `billing_history_archive`.

    A plain value, not an ORM object: an archived row cannot be written back by accident,
    and callers need not know which table it came from (only `archived` tells).
    """

    id: int
    customer_id: int
    subscription_id: int | None
    type: str
    status: str
    amount: int
    amount_paid: int
    amount_due: int
    currency: str
    description: str | None
    billing_reason: str | None
    period_start: datetime | None
    period_end: datetime | None
    stripe_invoice_id: str | None
    stripe_charge_id: str | None
    stripe_refund_id: str | None
    overage_charge_id: int | None
    number: str | None
    hosted_invoice_url: str | None
    invoice_pdf_url: str | None
    occurred_at: datetime
    created_at: datetime
    updated_at: datetime
    # When the row moved to the archive; None while it is in the hot table.
    archived_at: datetime | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None
