from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.subscription_plan import RATE

# Minutes are exact decimals: per-second billing gives fractions of a minute.
MINUTES = Numeric(16, 4)


class UsageRecord(Base):
    """One call's minutes, or one reading of active agents, as the dashboard reported it."""

    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint("kind IN ('minutes', 'agents')", name="kind_known"),
        CheckConstraint("source IN ('user', 'service')", name="source_known"),
        CheckConstraint("minutes IS NULL OR minutes >= 0", name="minutes_not_negative"),
        CheckConstraint("agents IS NULL OR agents >= 0", name="agents_not_negative"),
        CheckConstraint(
            "(kind = 'minutes' AND minutes IS NOT NULL AND call_id IS NOT NULL)"
            " OR (kind = 'agents' AND agents IS NOT NULL)",
            name="amount_matches_kind",
        ),
        # Idempotency per call: a call is counted once per customer, whichever of the
        # customer's subscriptions (old or current) its timestamp falls in.
        Index(
            "uq_usage_records_customer_call",
            "customer_id",
            "call_id",
            unique=True,
            postgresql_where=text("call_id IS NOT NULL"),
        ),
        Index("ix_usage_records_subscription_period", "subscription_id", "period_start"),
        # The record's subscription, and its customer the subscription's: one key, checked (a
        # read and a lock of the parent row) for every record inserted, where a key on each
        # column was two.
        ForeignKeyConstraint(
            ["subscription_id", "customer_id"],
            ["subscriptions.id", "subscriptions.customer_id"],
            ondelete="RESTRICT",
        ),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    # No index of its own: every read by customer goes by (customer_id, call_id).
    customer_id: Mapped[int]
    subscription_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    call_id: Mapped[str | None] = mapped_column(String(255))
    minutes: Mapped[Decimal | None] = mapped_column(MINUTES)
    agents: Mapped[int | None]
    occurred_at: Mapped[datetime]
    period_start: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))
    # A hash of the fields as the client sent them: the same record again is a duplicate, a
    # different one under the same call id a conflict.
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    # A user's record replaced by the telephony backend's: what it said, for the audit trail.
    replaced_payload: Mapped[str | None] = mapped_column(Text)


class UsagePeriodTotals(Base):
    """Per subscription and usage period: the counters the summary and the quota check read,
    kept in the same transaction as the records so neither scans `usage_records`."""

    __tablename__ = "usage_period_totals"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period_start"),
        CheckConstraint("minutes_used >= 0 AND peak_agents >= 0", name="totals_not_negative"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    minutes_used: Mapped[Decimal] = mapped_column(MINUTES, server_default="0")
    peak_agents: Mapped[int] = mapped_column(server_default="0")
    record_count: Mapped[int] = mapped_column(server_default="0")
    # When this period's overage was billed; records arriving after are billed as an
    # adjustment with the next invoice.
    overage_billed_at: Mapped[datetime | None]
    # The terms the period was closed with (set at the close): an adjustment for a late
    # record is priced with these, not with whatever plan the subscription has by then.
    closed_included_minutes: Mapped[int | None]
    closed_agent_limit: Mapped[int | None]
    closed_rate_per_minute: Mapped[Decimal | None] = mapped_column(RATE)
    closed_rate_per_agent: Mapped[Decimal | None] = mapped_column(RATE)
    closed_currency: Mapped[str | None] = mapped_column(String(3))
    closed_in_trial: Mapped[bool | None]


class UsageDailyTotals(Base):
    """Minutes per subscription and UTC day: the dashboard's chart and the anomaly check."""

    __tablename__ = "usage_daily_totals"
    __table_args__ = (UniqueConstraint("subscription_id", "day"),)

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    day: Mapped[date] = mapped_column(Date)
    minutes_used: Mapped[Decimal] = mapped_column(MINUTES, server_default="0")


class UsageAlert(Base):
    """A usage or payment alert for the customer (the dashboard lists and acknowledges them)."""

    __tablename__ = "usage_alerts"
    __table_args__ = (
        CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority_known"),
        # Once per period, kind, resource and threshold, however many records cross it at once.
        UniqueConstraint("subscription_id", "period_start", "kind", "resource", "threshold"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    period_start: Mapped[datetime]
    # usage_threshold, overage, usage_anomaly, payment_failed, ...
    kind: Mapped[str] = mapped_column(String(32))
    # minutes, agents, or '' when the alert is about no one resource.
    resource: Mapped[str] = mapped_column(String(16), server_default="")
    threshold: Mapped[int] = mapped_column(server_default="0")
    priority: Mapped[str] = mapped_column(String(8))
    action_required: Mapped[bool] = mapped_column(server_default=text("false"))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None] = mapped_column(index=True)


class OverageCharge(Base):
    """Overage billed for one usage period: the first charge when the period closes, and an
    adjustment for each later batch of late records. Unique per period and sequence, so a
    redelivered `invoice.created` bills nothing twice."""

    __tablename__ = "overage_charges"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period_start", "sequence"),
        # `refund_due`: a credit of an ended subscription, left for an operator to refund
        # (`app.usage.overage_billing.refunds`).
        CheckConstraint(
            "status IN ('pending', 'invoiced', 'pending_next_invoice', 'refund_due')",
            name="status_known",
        ),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    # 0 for the period's charge, 1, 2, ... for adjustments after it.
    sequence: Mapped[int]
    minutes_over: Mapped[Decimal] = mapped_column(MINUTES)
    agents_over: Mapped[int]
    minutes_amount: Mapped[int]
    agents_amount: Mapped[int]
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24), index=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255))
    stripe_invoice_item_ids: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    invoiced_at: Mapped[datetime | None]
    # The rates the charge was computed at (minor units per minute, per agent above the
    # limit), shown on the invoice beside the quantities. Null on charges made before they
    # were recorded.
    rate_per_minute: Mapped[Decimal | None] = mapped_column(RATE)
    rate_per_agent: Mapped[Decimal | None] = mapped_column(RATE)
