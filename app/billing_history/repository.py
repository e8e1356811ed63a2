"""Every query of billing history, over the hot table and its archive.

A row is in exactly one of `billing_history` and `billing_history_archive`, under the same id.
Reads that a customer or a Stripe update can reach look in both. Rows enter the archive only
through `move_to_archive`; once there, late Stripe updates are applied to them in place.
"""

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    FromClause,
    RowMapping,
    Select,
    SQLColumnExpression,
    Table,
    case,
    delete,
    func,
    literal,
    null,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing_history.records import BillingRecord
from app.models import BillingHistory, BillingHistoryArchive
from app.models.billing_history import INVOICE_ROW_PREDICATE, OVERAGE_PART_PREDICATE

_HOT: Table = BillingHistory.metadata.tables[BillingHistory.__tablename__]
_ARCHIVE: Table = BillingHistoryArchive.metadata.tables[BillingHistoryArchive.__tablename__]

# The predicate of the partial unique index `uq_billing_history_invoice`: ON CONFLICT must
# repeat it for PostgreSQL to pick that index as the arbiter.
_INVOICE_ROW = text(INVOICE_ROW_PREDICATE)

_RECORD_COLUMNS = tuple(
    field.name for field in fields(BillingRecord) if field.name != "archived_at"
)
# Every column of the hot table; the archive has each of them, plus `archived_at`.
_MOVED_COLUMNS = tuple(column.name for column in _HOT.columns)


def _record_columns(table: Table) -> Select[Any]:
    archived_at = (
        table.c.archived_at
        if table is _ARCHIVE
        else null().cast(DateTime(timezone=True)).label("archived_at")
    )
    return select(*(table.c[name] for name in _RECORD_COLUMNS), archived_at)


def _record(row: RowMapping) -> BillingRecord:
    return BillingRecord(**row)


# --- writes from Stripe's invoices and refunds ----------------------------------------


async def upsert_invoice_row(session: AsyncSession, values: dict[str, Any]) -> BillingRecord:
    """Insert the invoice's row, or bring the existing one up to date; returns the row.

    One statement, so concurrent deliveries of one invoice meet at the unique index: the
    second waits for the first to commit, then updates instead of failing.
    """
    statement = insert(_HOT).values(**values)
    excluded = statement.excluded
    updates: dict[str, Any] = {name: excluded[name] for name in values}
    # A delivery whose subscription the caller could not resolve must not unlink the row.
    updates["subscription_id"] = func.coalesce(excluded.subscription_id, _HOT.c.subscription_id)
    # ON CONFLICT DO UPDATE does not apply the column's Python-side `onupdate`.
    updates["updated_at"] = func.now()
    statement = statement.on_conflict_do_update(
        index_elements=["stripe_invoice_id"], index_where=_INVOICE_ROW, set_=updates
    )
    return await _returned_row(session, statement)


async def upsert_refund_row(session: AsyncSession, values: dict[str, Any]) -> BillingRecord:
    """Insert a refund row keyed by `stripe_refund_id`, or update its amount and status.

    `occurred_at` keeps its first value: the row stays where it was in the customer's list,
    so a cursor handed out before the update still pages correctly.
    """
    statement = insert(_HOT).values(**values)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["stripe_refund_id"],
        set_={
            "status": excluded.status,
            "amount": excluded.amount,
            "currency": excluded.currency,
            "stripe_invoice_id": func.coalesce(
                excluded.stripe_invoice_id, _HOT.c.stripe_invoice_id
            ),
            "subscription_id": func.coalesce(excluded.subscription_id, _HOT.c.subscription_id),
            "updated_at": func.now(),
        },
    )
    return await _returned_row(session, statement)


async def _returned_row(session: AsyncSession, statement: Insert) -> BillingRecord:
    columns = _record_columns(_HOT).selected_columns
    result = await session.execute(statement.returning(*columns))
    return _record(result.mappings().one())


async def update_archived_invoice_row(
    session: AsyncSession, values: dict[str, Any]
) -> BillingRecord | None:
    """Apply an invoice's current state to its archived row, if it has one; returns it."""
    updates = _archive_updates(values, keep_when_missing=("subscription_id",))
    statement = update(_ARCHIVE).where(
        _ARCHIVE.c.stripe_invoice_id == values["stripe_invoice_id"],
        _ARCHIVE.c.stripe_refund_id.is_(None),
        _ARCHIVE.c.overage_charge_id.is_(None),
    )
    return await _updated_archived_row(session, statement.values(**updates))


async def update_archived_refund_row(
    session: AsyncSession, values: dict[str, Any]
) -> BillingRecord | None:
    """Apply a refund's amount and status to its archived row, if it has one; returns it.

    The same columns as `upsert_refund_row` updates: `occurred_at` keeps its first value.
    """
    refund_fields = ("status", "amount", "currency", "stripe_invoice_id", "subscription_id")
    updates = _archive_updates(
        {name: values[name] for name in refund_fields if name in values},
        keep_when_missing=("stripe_invoice_id", "subscription_id"),
    )
    statement = update(_ARCHIVE).where(_ARCHIVE.c.stripe_refund_id == values["stripe_refund_id"])
    return await _updated_archived_row(session, statement.values(**updates))


def _archive_updates(values: dict[str, Any], *, keep_when_missing: Sequence[str]) -> dict[str, Any]:
    # As in the hot table's upserts: a link the delivery could not resolve is not unset.
    updates = {
        name: value
        for name, value in values.items()
        if not (name in keep_when_missing and value is None)
    }
    updates["updated_at"] = func.now()
    return updates


async def _updated_archived_row(session: AsyncSession, statement: Any) -> BillingRecord | None:
    columns = _record_columns(_ARCHIVE).selected_columns
    result = await session.execute(statement.returning(*columns))
    row = result.mappings().one_or_none()
    return None if row is None else _record(row)


async def delete_hot_row(session: AsyncSession, *, record_id: int) -> None:
    await session.execute(delete(_HOT).where(_HOT.c.id == record_id))


async def delete_refund_row(session: AsyncSession, *, stripe_refund_id: str) -> None:
    for table in (_HOT, _ARCHIVE):
        await session.execute(delete(table).where(table.c.stripe_refund_id == stripe_refund_id))


async def has_itemized_refunds(
    session: AsyncSession, *, stripe_charge_id: str, running_total_key: str
) -> bool:
    branches = [
        select(table.c.id)
        .where(
            table.c.stripe_charge_id == stripe_charge_id,
            table.c.type == "refund",
            table.c.stripe_refund_id != running_total_key,
        )
        .limit(1)
        for table in (_HOT, _ARCHIVE)
    ]
    found = await session.scalar(union_all(*branches).limit(1))
    return found is not None


async def get_invoice_subscription_id(
    session: AsyncSession, *, stripe_invoice_id: str
) -> int | None:
    branches = [
        select(table.c.subscription_id, literal(rank).label("rank")).where(
            table.c.stripe_invoice_id == stripe_invoice_id,
            table.c.stripe_refund_id.is_(None),
        )
        for rank, table in enumerate((_HOT, _ARCHIVE))
    ]
    # The hot table's row first; an invoice whose rows are all archived still has its link.
    subscription_id: int | None = await session.scalar(
        union_all(*branches).order_by(text("rank")).limit(1)
    )
    return subscription_id


# --- writes from overage billing ------------------------------------------------------------

# How far an invoice has gone: draft, then open (finalized), then settled. An overage row's
# status is written from events and from the biller's own reads, in no guaranteed order, so
# it only ever moves forward (uncollectible may still become paid).
_STATUS_RANK = {"pending": 0, "draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def _forward_status(current: SQLColumnExpression[str], new: str) -> ColumnElement[str]:
    """`new`, unless the row's status is already further along."""
    current_rank = case(_STATUS_RANK, value=current, else_=0)
    return case((current_rank <= _STATUS_RANK.get(new, 0), literal(new)), else_=current)


async def insert_overage_row(session: AsyncSession, values: dict[str, Any]) -> None:
    """An `overage` row of a charge (its part on one invoice, or its part still pending),
    unless it has one: the unique (`overage_charge_id`, `stripe_invoice_id`) keeps one row
    per charge and invoice (ON CONFLICT DO NOTHING)."""
    await session.execute(
        insert(BillingHistory)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["overage_charge_id", "stripe_invoice_id"],
            index_where=text(OVERAGE_PART_PREDICATE),
        )
    )


async def place_overage_part(
    session: AsyncSession, *, overage_charge_id: int, stripe_invoice_id: str, amount: int | None
) -> bool:
    """Move `amount` of the charge's pending row (all of it for None) onto its row of this
    invoice, created if it has none; returns whether nothing of the charge is left pending.

    A row the invoice already has is left as it is (the same event twice moves nothing)."""
    rows = (
        await session.scalars(
            select(BillingHistory)
            .where(BillingHistory.overage_charge_id == overage_charge_id)
            .with_for_update()
        )
    ).all()
    pending = next((row for row in rows if row.stripe_invoice_id is None), None)
    placed = any(row.stripe_invoice_id == stripe_invoice_id for row in rows)
    if pending is None:
        return True
    if placed:
        return False
    if amount is None or amount >= pending.amount:
        pending.stripe_invoice_id = stripe_invoice_id
        await session.flush()
        return True
    session.add(
        BillingHistory(
            customer_id=pending.customer_id,
            subscription_id=pending.subscription_id,
            type=pending.type,
            status="draft",
            amount=amount,
            currency=pending.currency,
            description=pending.description,
            billing_reason=pending.billing_reason,
            period_start=pending.period_start,
            period_end=pending.period_end,
            stripe_invoice_id=stripe_invoice_id,
            overage_charge_id=overage_charge_id,
            occurred_at=pending.occurred_at,
        )
    )
    pending.amount -= amount
    await session.flush()
    return False


async def update_overage_rows(
    session: AsyncSession,
    *,
    overage_charge_ids: Sequence[int],
    stripe_invoice_id: str,
    status: str,
    number: str | None,
    hosted_invoice_url: str | None,
    invoice_pdf_url: str | None,
) -> None:
    """Bring the `overage` rows of these charges on this invoice, hot or archived, up to it:
    its status (only forward), and its number and links where it has them.

    The hot table, then the archive (a replayed event of an old, settled invoice): in this
    order, a row moved by an archive batch meanwhile is found by the second statement."""
    for table in (BillingHistory, BillingHistoryArchive):
        await session.execute(
            update(table)
            .where(
                table.overage_charge_id.in_(overage_charge_ids),
                table.stripe_invoice_id == stripe_invoice_id,
            )
            .values(
                status=_forward_status(table.status, status),
                number=func.coalesce(number, table.number),
                hosted_invoice_url=func.coalesce(hosted_invoice_url, table.hosted_invoice_url),
                invoice_pdf_url=func.coalesce(invoice_pdf_url, table.invoice_pdf_url),
                updated_at=func.now(),
            )
        )


# --- reads ------------------------------------------------------------------------------


async def get_for_customer(
    session: AsyncSession, *, customer_id: int, record_id: int
) -> BillingRecord | None:
    """The customer's row with this id, from the hot table or else the archive; None when
    there is none or it is another customer's.

    One statement over both tables (the hot table's branch runs first, and the archive's
    only when it found nothing), so a row being archived at that moment is found in one of
    them (a statement sees one snapshot), never in neither.
    """
    branches = [
        _record_columns(table).where(table.c.id == record_id, table.c.customer_id == customer_id)
        for table in (_HOT, _ARCHIVE)
    ]
    row = (await session.execute(union_all(*branches).limit(1))).mappings().first()
    return None if row is None else _record(row)


async def list_for_customer(
    session: AsyncSession,
    *,
    customer_id: int,
    older_than: tuple[datetime, int] | None,
    limit: int,
    entry_type: str | None,
    status: str | None,
    include_archived: bool = False,
) -> list[BillingRecord]:
    """Newest first; `older_than` is the (occurred_at, id) of the last row already shown.

    With `include_archived`, the archive's rows are merged in the same order: each table
    gives its own first `limit` rows from its (customer_id, occurred_at, id) index, and the
    merge keeps the first `limit` of those. Ids are unique across the two tables, so the
    keyset is one order over both and a cursor pages across them.
    """

    def page_of(table: Table) -> Select[Any]:
        query = (
            _record_columns(table)
            .where(table.c.customer_id == customer_id)
            .order_by(table.c.occurred_at.desc(), table.c.id.desc())
            .limit(limit)
        )
        if older_than is not None:
            # A row comparison, so ties on occurred_at are broken by id and the index
            # (customer_id, occurred_at, id) serves the page directly.
            query = query.where(tuple_(table.c.occurred_at, table.c.id) < older_than)
        if entry_type is not None:
            query = query.where(table.c.type == entry_type)
        if status is not None:
            query = query.where(table.c.status == status)
        return query

    if not include_archived:
        rows = (await session.execute(page_of(_HOT))).mappings().all()
        return [_record(row) for row in rows]
    merged = union_all(
        page_of(_HOT).subquery().select(), page_of(_ARCHIVE).subquery().select()
    ).subquery()
    query = select(merged).order_by(merged.c.occurred_at.desc(), merged.c.id.desc()).limit(limit)
    return [_record(row) for row in (await session.execute(query)).mappings().all()]


async def newer_open_invoice_exists(
    session: AsyncSession, *, subscription_id: int, stripe_invoice_id: str, created: datetime
) -> bool:
    # The hot table only: an open invoice is never archived.
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


# --- archiving ----------------------------------------------------------------------------


async def newest_id(session: AsyncSession) -> int:
    """The highest id in either table (0 when both are empty)."""
    newest = await session.scalar(
        select(
            func.greatest(
                select(func.coalesce(func.max(_HOT.c.id), 0)).scalar_subquery(),
                select(func.coalesce(func.max(_ARCHIVE.c.id), 0)).scalar_subquery(),
            )
        )
    )
    return int(newest or 0)


async def count_rows(
    session: AsyncSession, *, up_to_id: int, occurred_before: datetime, statuses: Sequence[str]
) -> tuple[int, int, int]:
    """(hot rows, archived rows, hot rows the archive rule takes), over ids up to `up_to_id`;
    one statement, so the three counts come from one snapshot."""
    archived = (
        select(func.count()).select_from(_ARCHIVE).where(_ARCHIVE.c.id <= up_to_id)
    ).scalar_subquery()
    statement = (
        select(
            func.count(),
            func.count().filter(_archivable(_HOT, occurred_before, statuses)),
            archived,
        )
        .select_from(_HOT)
        .where(_HOT.c.id <= up_to_id)
    )
    hot, eligible, archived_count = (await session.execute(statement)).one()
    return int(hot), int(archived_count), int(eligible)


def _archivable(
    table: FromClause, occurred_before: datetime, statuses: Sequence[str]
) -> ColumnElement[bool]:
    return (table.c.occurred_at < occurred_before) & table.c.status.in_(statuses)


async def move_to_archive(
    session: AsyncSession,
    *,
    occurred_before: datetime,
    statuses: Sequence[str],
    after_id: int,
    limit: int,
    archived_at: datetime,
) -> list[int]:
    """Move up to `limit` archivable rows with ids above `after_id`, lowest ids first, from
    the hot table to the archive; returns their ids.

    One statement (DELETE ... RETURNING feeding the INSERT), so within its transaction a row
    leaves the hot table exactly when it enters the archive. SKIP LOCKED: a row a webhook is
    updating right now is left for the next run, and two runs at once move different rows.
    """
    candidates = _HOT.alias("candidates")
    chosen = (
        select(candidates.c.id)
        .where(candidates.c.id > after_id, _archivable(candidates, occurred_before, statuses))
        .order_by(candidates.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    moved = (
        delete(_HOT).where(_HOT.c.id.in_(chosen.scalar_subquery())).returning(*_HOT.c).cte("moved")
    )
    statement = (
        insert(_ARCHIVE)
        .from_select(
            [*_MOVED_COLUMNS, "archived_at"],
            select(
                *(moved.c[name] for name in _MOVED_COLUMNS),
                literal(archived_at, DateTime(timezone=True)),
            ),
        )
        .returning(_ARCHIVE.c.id)
    )
    return list((await session.scalars(statement)).all())


async def list_invoice_rows(session: AsyncSession) -> list[BillingRecord]:
    """The hot table's rows of whole invoices (not refunds, not an overage charge's row on
    its invoice), oldest first."""
    rows = await session.execute(
        _record_columns(_HOT)
        .where(
            _HOT.c.stripe_refund_id.is_(None),
            _HOT.c.stripe_invoice_id.is_not(None),
            _HOT.c.overage_charge_id.is_(None),
        )
        .order_by(_HOT.c.id)
    )
    return [_record(row) for row in rows.mappings()]
