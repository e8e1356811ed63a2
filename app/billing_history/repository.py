from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import BillingHistory

# The predicate of the partial unique index `uq_billing_history_invoice`: ON CONFLICT must
# repeat it for PostgreSQL to pick that index as the arbiter.
_INVOICE_ROW = text(
    "stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL AND overage_charge_id IS NULL"
)


async def upsert_invoice_row(session: AsyncSession, values: dict[str, Any]) -> BillingHistory:
    """Insert the invoice's row, or bring the existing one up to date; returns the row.

    One statement, so concurrent deliveries of one invoice meet at the unique index: the
    second waits for the first to commit, then updates instead of failing.
    """
    statement = insert(BillingHistory).values(**values)
    excluded = statement.excluded
    updates: dict[str, Any] = {name: excluded[name] for name in values}
    # A delivery whose subscription the caller could not resolve must not unlink the row.
    updates["subscription_id"] = func.coalesce(
        excluded.subscription_id, BillingHistory.subscription_id
    )
    # ON CONFLICT DO UPDATE does not apply the column's Python-side `onupdate`.
    updates["updated_at"] = func.now()
    statement = statement.on_conflict_do_update(
        index_elements=["stripe_invoice_id"], index_where=_INVOICE_ROW, set_=updates
    )
    return await _returned_row(session, statement)


async def upsert_refund_row(session: AsyncSession, values: dict[str, Any]) -> BillingHistory:
    """Insert a refund row keyed by `stripe_refund_id`, or update its amount and status.

    `occurred_at` keeps its first value: the row stays where it was in the customer's list,
    so a cursor handed out before the update still pages correctly.
    """
    statement = insert(BillingHistory).values(**values)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["stripe_refund_id"],
        set_={
            "status": excluded.status,
            "amount": excluded.amount,
            "currency": excluded.currency,
            "stripe_invoice_id": func.coalesce(
                excluded.stripe_invoice_id, BillingHistory.stripe_invoice_id
            ),
            "subscription_id": func.coalesce(
                excluded.subscription_id, BillingHistory.subscription_id
            ),
            "updated_at": func.now(),
        },
    )
    return await _returned_row(session, statement)


async def _returned_row(session: AsyncSession, statement: Insert) -> BillingHistory:
    # populate_existing: a row this session already holds takes the values just written.
    rows = await session.scalars(
        statement.returning(BillingHistory), execution_options={"populate_existing": True}
    )
    return rows.one()


async def delete_refund_row(session: AsyncSession, *, stripe_refund_id: str) -> None:
    await session.execute(
        delete(BillingHistory).where(BillingHistory.stripe_refund_id == stripe_refund_id)
    )


async def has_itemized_refunds(
    session: AsyncSession, *, stripe_charge_id: str, running_total_key: str
) -> bool:
    found = await session.scalar(
        select(BillingHistory.id)
        .where(
            BillingHistory.stripe_charge_id == stripe_charge_id,
            BillingHistory.type == "refund",
            BillingHistory.stripe_refund_id != running_total_key,
        )
        .limit(1)
    )
    return found is not None


async def get_invoice_subscription_id(
    session: AsyncSession, *, stripe_invoice_id: str
) -> int | None:
    return await session.scalar(
        select(BillingHistory.subscription_id).where(
            BillingHistory.stripe_invoice_id == stripe_invoice_id,
            BillingHistory.stripe_refund_id.is_(None),
        )
    )


async def get_for_customer(
    session: AsyncSession, *, customer_id: int, record_id: int
) -> BillingHistory | None:
    """One of the customer's rows by id; None when it does not exist or is another
    customer's. The one look-up of a single row: rows moved to an archive keep their ids, and
    this is where they are to be found too."""
    return await session.scalar(
        select(BillingHistory).where(
            BillingHistory.id == record_id, BillingHistory.customer_id == customer_id
        )
    )


async def list_for_customer(
    session: AsyncSession,
    *,
    customer_id: int,
    older_than: tuple[datetime, int] | None,
    limit: int,
    entry_type: str | None,
    status: str | None,
) -> Sequence[BillingHistory]:
    """Newest first; `older_than` is the (occurred_at, id) of the last row already shown."""
    query = (
        select(BillingHistory)
        .where(BillingHistory.customer_id == customer_id)
        .order_by(BillingHistory.occurred_at.desc(), BillingHistory.id.desc())
        .limit(limit)
    )
    if older_than is not None:
        # A row comparison, so ties on occurred_at are broken by id and the index
        # (customer_id, occurred_at, id) serves the page directly.
        query = query.where(tuple_(BillingHistory.occurred_at, BillingHistory.id) < older_than)
    if entry_type is not None:
        query = query.where(BillingHistory.type == entry_type)
    if status is not None:
        query = query.where(BillingHistory.status == status)
    return (await session.scalars(query)).all()


async def newer_open_invoice_exists(
    session: AsyncSession, *, subscription_id: int, stripe_invoice_id: str, created: datetime
) -> bool:
    found = await session.scalar(
        select(BillingHistory.id)
        .where(
            BillingHistory.subscription_id == subscription_id,
            BillingHistory.stripe_invoice_id != stripe_invoice_id,
            BillingHistory.stripe_refund_id.is_(None),
            BillingHistory.status == "open",
            BillingHistory.occurred_at > created,
        )
        .limit(1)
    )
    return found is not None
