"""Billing history: the rows Stripe's invoices and refunds leave, and the customer's list."""

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing_history import repository
from app.billing_history.errors import InvalidCursor
from app.billing_history.records import BillingRecord
from app.stripe_gateway.types import ChargeState, InvoiceState

_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class BillingHistoryPage:
    rows: Sequence[BillingRecord]
    # Where the next (older) page starts; None on the last page.
    next_cursor: str | None


async def record_invoice(
    session: AsyncSession,
    *,
    invoice: InvoiceState,
    customer_id: int,
    subscription_id: int | None,
    add_on_price_ids: set[str],
) -> BillingRecord:
    """Create or update the one row of a Stripe invoice (API version 2026-10-28.endive).

    Every delivery overwrites the row with the invoice's current state, so the same invoice
    delivered any number of times, concurrently too, is one row. Applying an older state
    after a newer one is the caller's to prevent (the webhook watermark).

    The type is read from the invoice itself, in this order, because Stripe names no
    "kind" of invoice:
    - `overage` when our own metadata says `billing_type=overage`: the usage job creates
      those invoices and marks them, and our own mark is the one signal that cannot be
      misread, so it wins over anything inferred from the lines.
    - `proration` when `billing_reason` is `subscription_update` (a plan, cycle or quantity
      change invoiced at once: `proration_behavior=always_invoice`) or any line is a
      proration: the charge is for part of a period, caused by a change.
    - `add_on` when every line is priced with an add-on's price: an add-on billed alone,
      with no plan line beside it.
    - `subscription` otherwise: the first invoice and each renewal, where the plan's line
      is present.

    An invoice whose row was archived is updated in the archive (see `_keep_archived_row`).
    """
    period_start, period_end = _invoice_period(invoice)
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "type": _invoice_type(invoice, add_on_price_ids),
        # Since basil there is no `paid` flag: status "paid" is the one signal of payment.
        "status": str(invoice.status),
        "amount": invoice.total,
        "amount_paid": invoice.amount_paid,
        "amount_due": invoice.amount_due,
        "currency": invoice.currency.lower(),
        "description": invoice.description,
        "billing_reason": invoice.billing_reason,
        "period_start": period_start,
        "period_end": period_end,
        "stripe_invoice_id": invoice.id,
        "number": invoice.number,
        "hosted_invoice_url": invoice.hosted_invoice_url,
        "invoice_pdf_url": invoice.invoice_pdf_url,
        "occurred_at": _required_time(invoice.created),
    }
    row = await repository.upsert_invoice_row(session, values)
    archived = await repository.update_archived_invoice_row(session, values)
    return await _keep_archived_row(session, row, archived)


async def _record_refund_row(session: AsyncSession, values: dict[str, Any]) -> BillingRecord:
    row = await repository.upsert_refund_row(session, values)
    archived = await repository.update_archived_refund_row(session, values)
    return await _keep_archived_row(session, row, archived)


async def _keep_archived_row(
    session: AsyncSession, hot_row: BillingRecord, archived_row: BillingRecord | None
) -> BillingRecord:
    """One row per invoice (and per refund) across the hot table and the archive.

    A late Stripe update of an archived row (a replay, an uncollectible invoice paid at
    last) finds no row in the hot table, so the upsert inserts one; the update is then
    applied to the archived row and that new hot row is deleted in the same transaction.

    The hot table is written first on purpose. Were the archive checked first, a batch
    moving this very row could commit between the check and the upsert: the upsert, having
    waited on the batch's lock, would insert a second row. Checked after, the archive is
    read by a later statement, which sees the batch's commit.
    """
    if archived_row is None:
        return hot_row
    await repository.delete_hot_row(session, record_id=hot_row.id)
    return archived_row


async def record_charge_refunds(
    session: AsyncSession,
    *,
    charge: ChargeState,
    customer_id: int,
    refunded_at: datetime | None = None,
) -> list[BillingRecord]:
    """Create or update the refund rows of a Stripe charge; returns the rows written.

    Webhook payloads of charges no longer carry their refunds (Stripe stopped including
    `refunds` in 2022-11-15), so two shapes arrive:
    - with `refunds.data` (a charge fetched with `expand=["refunds"]`): one row per refund,
      keyed by the refund's id, with its own amount, time and status;
    - without: one row per charge, keyed `"{charge_id}:refunds"`, holding the cumulative
      `amount_refunded`, updated on each delivery. Its time is `refunded_at` (pass the
      event's `created`) when given, else the charge's `created`: the charge carries no
      time of its refunds.

    Itemized rows replace the running total, and a running total is not written beside
    them: either way the customer's refunds would be counted twice.
    """
    charge_id = charge.id
    running_total_key = f"{charge_id}:refunds"
    invoice_id = charge.invoice_id
    subscription_id = (
        await repository.get_invoice_subscription_id(session, stripe_invoice_id=invoice_id)
        if invoice_id
        else None
    )
    shared: dict[str, Any] = {
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "type": "refund",
        "stripe_charge_id": charge_id,
        "stripe_invoice_id": invoice_id,
    }

    if charge.refunds:
        rows = [
            await _record_refund_row(
                session,
                {
                    **shared,
                    "status": _refund_status(refund.status),
                    "amount": abs(refund.amount),
                    "currency": (refund.currency or charge.currency).lower(),
                    "stripe_refund_id": refund.id,
                    "occurred_at": _required_time(refund.created),
                },
            )
            for refund in charge.refunds
        ]
        await repository.delete_refund_row(session, stripe_refund_id=running_total_key)
        return rows

    amount_refunded = charge.amount_refunded
    if amount_refunded == 0:
        # Nothing refunded (any more: a failed refund gives its amount back to the charge).
        await repository.delete_refund_row(session, stripe_refund_id=running_total_key)
        return []
    if await repository.has_itemized_refunds(
        session, stripe_charge_id=charge_id, running_total_key=running_total_key
    ):
        return []
    row = await _record_refund_row(
        session,
        {
            **shared,
            "status": "refunded",
            "amount": abs(amount_refunded),
            "currency": charge.currency.lower(),
            "stripe_refund_id": running_total_key,
            "occurred_at": refunded_at or _required_time(charge.created),
        },
    )
    return [row]


async def record_overage_charge(
    session: AsyncSession,
    *,
    overage_charge_id: int,
    customer_id: int,
    subscription_id: int,
    parts: Sequence[tuple[InvoiceState | None, int]],
    currency: str,
    description: str,
    period_start: datetime,
    period_end: datetime,
    occurred_at: datetime,
) -> None:
    """The `overage` rows of an overage charge just billed: one per invoice holding its items
    (with that invoice's status, number and links, and the amount of the items on it), and
    one `pending` row for what waits for the next invoice. Usually one row: a charge is
    split only when an invoice was finalized between its items.

    Written once per charge and invoice (a second call changes nothing), in the transaction
    that completes the charge; later invoice events move them on
    (`update_overage_rows_from_invoice`). The hot table only: a charge's rows are written
    before they can ever be archived.
    """
    for invoice, amount in parts:
        await repository.insert_overage_row(
            session,
            {
                "customer_id": customer_id,
                "subscription_id": subscription_id,
                "type": "overage",
                "status": str(invoice.status) if invoice else "pending",
                "amount": amount,
                "currency": currency,
                "description": description,
                "billing_reason": None,
                "period_start": period_start,
                "period_end": period_end,
                "stripe_invoice_id": invoice.id if invoice else None,
                "overage_charge_id": overage_charge_id,
                "number": invoice.number if invoice else None,
                "hosted_invoice_url": invoice.hosted_invoice_url if invoice else None,
                "invoice_pdf_url": invoice.invoice_pdf_url if invoice else None,
                "occurred_at": occurred_at,
            },
        )


async def update_overage_rows_from_invoice(
    session: AsyncSession,
    *,
    overage_parts: Mapping[int, int | None],
    invoice: InvoiceState,
) -> set[int]:
    """The `overage` rows of these charges' items on `invoice` take the invoice's status,
    number and links, archived rows included (a replayed event of an old invoice updates its
    archived row in place; no row comes back to the hot table). `overage_parts`: charge id →
    the amount of its items on this invoice (None: all of them); that much moves from the
    charge's pending row to its row of this invoice first. Returns the charges with nothing
    left pending.

    Statuses only move forward (draft, open, uncollectible, then paid or void): events and
    the biller's own reads of the invoice arrive in no guaranteed order, and an older state
    read late must not undo a newer one. A number or link the invoice lacks keeps the row's.
    """
    if not overage_parts:
        return set()
    settled = set()
    for charge_id in sorted(overage_parts):
        if await repository.place_overage_part(
            session,
            overage_charge_id=charge_id,
            stripe_invoice_id=invoice.id,
            amount=overage_parts[charge_id],
        ):
            settled.add(charge_id)
    await repository.update_overage_rows(
        session,
        overage_charge_ids=sorted(overage_parts),
        stripe_invoice_id=invoice.id,
        status=invoice.status or "draft",
        number=invoice.number,
        hosted_invoice_url=invoice.hosted_invoice_url,
        invoice_pdf_url=invoice.invoice_pdf_url,
    )
    return settled


async def has_newer_open_invoice(
    session: AsyncSession,
    *,
    subscription_id: int,
    stripe_invoice_id: str,
    created: datetime | None,
) -> bool:
    """Whether a later invoice of the subscription is still unpaid (so paying this one does
    not end the customer's payment trouble)."""
    if created is None:
        return False
    return await repository.newer_open_invoice_exists(
        session,
        subscription_id=subscription_id,
        stripe_invoice_id=stripe_invoice_id,
        created=created,
    )


async def get_entry_for_customer(
    session: AsyncSession, *, customer_id: int, record_id: int
) -> BillingRecord | None:
    """The customer's row `record_id`, archived or not; None for an unknown id or another
    customer's row."""
    return await repository.get_for_customer(session, customer_id=customer_id, record_id=record_id)


async def list_billing_history(
    session: AsyncSession,
    *,
    customer_id: int,
    cursor: str | None,
    limit: int,
    entry_type: str | None = None,
    status: str | None = None,
    include_archived: bool = False,
) -> BillingHistoryPage:
    """One page of the customer's rows, newest first, with the archived rows merged in when
    `include_archived`; raises InvalidCursor for a bad cursor."""
    rows = await repository.list_for_customer(
        session,
        customer_id=customer_id,
        older_than=None if cursor is None else _decode_cursor(cursor),
        # One row more than asked tells whether another page exists, without a count.
        limit=limit + 1,
        entry_type=entry_type,
        status=status,
        include_archived=include_archived,
    )
    page = rows[:limit]
    has_more = len(rows) > limit
    return BillingHistoryPage(rows=page, next_cursor=_encode_cursor(page[-1]) if has_more else None)


def _invoice_type(invoice: InvoiceState, add_on_price_ids: set[str]) -> str:
    if invoice.metadata.get("billing_type") == "overage":
        return "overage"
    lines = invoice.lines
    if invoice.billing_reason == "subscription_update" or any(line.proration for line in lines):
        return "proration"
    if lines and all(line.price_id in add_on_price_ids for line in lines):
        return "add_on"
    return "subscription"


def _invoice_period(invoice: InvoiceState) -> tuple[datetime | None, datetime | None]:
    # The lines, not the invoice: a subscription invoice's own period_start/period_end is
    # the window its pending items were collected in (the previous period for a renewal),
    # while the lines say which period is billed.
    starts = [line.period_start for line in invoice.lines if line.period_start is not None]
    ends = [line.period_end for line in invoice.lines if line.period_end is not None]
    start = min(starts) if starts else invoice.period_start
    end = max(ends) if ends else invoice.period_end
    return start, end


def _refund_status(status: str | None) -> str:
    # "refunded" once the money is on its way back; a refund that is pending, failed or
    # canceled shows as such, so the customer is not told of money that never came.
    return "refunded" if status in (None, "succeeded") else str(status)


def _required_time(moment: datetime | None) -> datetime:
    if moment is None:
        raise ValueError("Not a Unix timestamp: the time is missing")
    return moment


# The cursor is opaque to clients but not secret: a forged one only pages the caller's own
# rows, since the customer filter is applied whatever the cursor says.
def _encode_cursor(row: BillingRecord) -> str:
    position = f"{row.occurred_at.astimezone(UTC).isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # validate=True: the lenient decoder would skip stray characters and accept junk.
        position = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        occurred_at_text, _, id_text = position.partition("|")
        occurred_at = datetime.fromisoformat(occurred_at_text)
        row_id = int(id_text) if id_text.isascii() and id_text.isdigit() else -1
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor() from None
    if occurred_at.tzinfo is None or not 1 <= row_id <= _MAX_ID:
        raise InvalidCursor()
    return occurred_at, row_id


async def list_invoice_rows(session: AsyncSession) -> list[BillingRecord]:
    """The invoices the hot billing history holds (reconcile compares them with Stripe's)."""
    return await repository.list_invoice_rows(session)
