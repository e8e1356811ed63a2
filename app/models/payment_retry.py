from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Identity, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

# `scheduled`: due at `due_at`; `running`: claimed, its Stripe call under way (or its worker
# died: the sweeper runs it again with the same idempotency key); the rest are final.
PAYMENT_RETRY_STATUSES = (
    "scheduled",
    "running",
    "succeeded",
    "failed",
    "action_required",
    "canceled",
)


class PaymentRetry(Base):
    """One attempt of the service's own at a failed invoice (dunning). The row is the truth;
    arq only runs it, and a sweeper finds a due row again when Redis lost its job."""

    __tablename__ = "payment_retries"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in PAYMENT_RETRY_STATUSES)),
            name="status_known",
        ),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        # The attempt number names the idempotency key: one row, one payment, per number.
        UniqueConstraint("stripe_invoice_id", "attempt", name="uq_payment_retries_invoice_attempt"),
        # At most one attempt in flight per subscription: a second "retry now" is a 409.
        Index(
            "uq_payment_retries_one_running_per_subscription",
            "subscription_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
        Index("ix_payment_retries_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    stripe_invoice_id: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int]
    # `schedule` (one of MAX_PAYMENT_RETRIES), `operator` (retry now), `new_card`.
    trigger: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), server_default="scheduled")
    # The card charged, fixed when the attempt is claimed: a re-run of the same attempt sends
    # the same parameters under the same key (Stripe refuses a key reused with others).
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    @property
    def idempotency_key(self) -> str:
        return f"dunning-retry:{self.stripe_invoice_id}:{self.attempt}"
