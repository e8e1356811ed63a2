from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.schemas import Schema, SuccessResponse

BillingHistoryType = Literal["subscription", "overage", "add_on", "proration", "refund"]


class BillingHistoryPublic(Schema):
    id: int
    type: BillingHistoryType
    status: str = Field(
        description="The invoice's Stripe status (draft, open, paid, uncollectible, void); "
        "for a refund: refunded, or the refund's status while it is not through."
    )
    amount: int = Field(description="Minor units of `currency`; a refund's amount is positive.")
    amount_paid: int
    amount_due: int
    currency: str
    description: str | None
    billing_reason: str | None
    period_start: datetime | None
    period_end: datetime | None
    number: str | None
    hosted_invoice_url: str | None
    invoice_pdf_url: str | None
    stripe_invoice_id: str | None
    stripe_charge_id: str | None
    stripe_refund_id: str | None
    occurred_at: datetime
    archived: bool = Field(
        description="Moved to the archive (settled and old); listed only with "
        "`include_archived=true`, and its PDF stays downloadable."
    )


class BillingHistoryListResponse(SuccessResponse):
    billing_history: list[BillingHistoryPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )
