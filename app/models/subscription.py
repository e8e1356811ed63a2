from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Identity, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin

BILLING_CYCLES = ("monthly", "yearly")
# `pending` is ours: the reservation taken before Stripe is called. The rest are Stripe's.
SUBSCRIPTION_STATUSES = (
    "pending",
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "paused",
    "canceled",
)
# A customer has at most one subscription in these states (pending and incomplete included:
# a payment in flight holds the slot).
LIVE_STATUSES = ("pending", "incomplete", "trialing", "active", "past_due", "unpaid", "paused")
# A subscription in these states has ended for good: no renewal invoice will come.
ENDED_STATUSES = ("canceled", "incomplete_expired")


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class Subscription(TimestampedMixin, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_sql_list(SUBSCRIPTION_STATUSES)})", name="status_known"),
        CheckConstraint(f"billing_cycle IN ({_sql_list(BILLING_CYCLES)})", name="cycle_known"),
        CheckConstraint(
            "pending_billing_cycle IS NULL OR pending_billing_cycle IN "
            f"({_sql_list(BILLING_CYCLES)})",
            name="pending_cycle_known",
        ),
        CheckConstraint("failed_payment_attempts >= 0", name="attempts_not_negative"),
        # The one-live-subscription rule, enforced where concurrent subscribes meet.
        Index(
            "uq_subscriptions_one_live_per_customer",
            "customer_id",
            unique=True,
            postgresql_where=text(f"status IN ({_sql_list(LIVE_STATUSES)})"),
        ),
        # What usage_records' key refers to: a record's subscription is its customer's.
        UniqueConstraint("id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    plan_id: Mapped[int] = mapped_column(
        ForeignKey("subscription_plans.id", ondelete="RESTRICT"), index=True
    )
    billing_cycle: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The subscription item that carries the plan's price (add-ons have their own items).
    stripe_plan_item_id: Mapped[str | None] = mapped_column(String(255))
    # Stripe's billing_cycle_anchor: monthly usage periods count from it.
    billing_cycle_anchor: Mapped[datetime | None]
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(server_default=text("false"))
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    failed_payment_attempts: Mapped[int] = mapped_column(server_default="0")
    grace_period_ends_at: Mapped[datetime | None]
    # Dunning (`app.subscriptions.dunning`): the open invoice being retried, the latest
    # decline, the next retry of ours, and when access was suspended for non-payment
    # (distinct from an operator's suspension on the customer). All cleared on recovery.
    dunning_invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    last_decline_code: Mapped[str | None] = mapped_column(String(64))
    next_payment_retry_at: Mapped[datetime | None]
    # The customer must act (SCA): off-session retries stopped until they pay.
    dunning_action_required: Mapped[bool] = mapped_column(server_default=text("false"))
    # Stripe's automatic collection turned off for `dunning_invoice_id` (done by the sweeper,
    # outside the webhook's transaction).
    dunning_auto_advance_off: Mapped[bool] = mapped_column(server_default=text("false"))
    payment_overdue_at: Mapped[datetime | None]
    last_stripe_event_at: Mapped[datetime | None]

    # The reservation: what a subscribe asked for (hash of plan, cycle and add-ons) and until
    # when the request that holds it is working on it. A retry after that resumes it.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    reserved_until: Mapped[datetime | None]
    # A reservation paid through Stripe Checkout: its open (or last) Checkout Session. The
    # reservation holds the one-live-subscription slot while the session is open, so a
    # second checkout or subscribe is refused before any payment (`subscriptions.checkout`).
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)

    # A change that waits for the period end (downgrade, yearly to monthly), held by a
    # Stripe subscription schedule.
    pending_plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscription_plans.id", ondelete="RESTRICT"), index=True
    )
    pending_billing_cycle: Mapped[str | None] = mapped_column(String(16))
    pending_change_at: Mapped[datetime | None]
    stripe_schedule_id: Mapped[str | None] = mapped_column(String(255))
