import asyncio
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import archive, repository, service
from app.billing_history.archive import ArchivedBatch
from app.billing_history.records import BillingRecord
from app.core.clock import FrozenClock
from app.models import BillingHistory, BillingHistoryArchive, Customer
from app.stripe_gateway.parsing import parse_charge, parse_invoice
from app.usage.overage_billing import record_invoice_overage
from tests.billing_history.payloads import (
    ADD_ON_PRICES,
    charge_payload,
    invoice_payload,
    refund_payload,
)
from tests.conftest import TEST_NOW
from tests.factories import (
    create_billing_row,
    create_customer,
    create_overage_charge,
    create_subscribed_customer,
    insert_billing_rows,
)

CUTOFF = TEST_NOW - timedelta(days=730)
OLD = datetime(2023, 1, 1, tzinfo=UTC)
RECENT = TEST_NOW - timedelta(days=30)


class SimulatedCrash(Exception):
    """The process dying between two batches."""


async def _add_row(session: AsyncSession, customer: Customer, **overrides: Any) -> BillingHistory:
    """A paid invoice row from long ago (OLD) unless told otherwise."""
    return await create_billing_row(session, customer, **{"occurred_at": OLD, **overrides})


async def _ids(
    session: AsyncSession, model: type[BillingHistory | BillingHistoryArchive]
) -> list[int]:
    return list(await session.scalars(select(model.id).order_by(model.id)))


_COLUMNS = [column.name for column in BillingHistory.__table__.columns]


async def _every_row(session: AsyncSession) -> list[tuple[Any, ...]]:
    """Every row's columns across both tables, by id, archived_at aside."""
    hot = select(*(BillingHistory.__table__.c[name] for name in _COLUMNS))
    archived = select(*(BillingHistoryArchive.__table__.c[name] for name in _COLUMNS))
    rows = await session.execute(union_all(hot, archived).order_by(text("id")))
    return [tuple(row) for row in rows]


async def _run(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    *,
    batch_size: int = archive.DEFAULT_BATCH_SIZE,
    crash_after_batches: int | None = None,
    dry_run: bool = False,
) -> archive.ArchiveRun:
    def on_batch(batch: ArchivedBatch) -> None:
        if batch.number == crash_after_batches:
            raise SimulatedCrash()

    return await archive.archive_billing_records(
        sessionmaker,
        clock=clock,
        older_than_days=730,
        batch_size=batch_size,
        dry_run=dry_run,
        on_batch=on_batch,
    )


def test_the_archive_has_every_column_of_the_hot_table_and_the_record_reads_them() -> None:
    hot = {column.name for column in BillingHistory.__table__.columns}
    archived = {column.name for column in BillingHistoryArchive.__table__.columns}

    assert archived == hot | {"archived_at"}
    assert {field.name for field in fields(BillingRecord)} == archived


async def test_ten_thousand_rows_interrupted_half_way_and_resumed_lose_and_double_nothing(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    await insert_billing_rows(session, customer, count=10_000, first_occurred_at=OLD)
    # Rows the rule leaves: recent ones, and old ones Stripe may still change.
    await insert_billing_rows(
        session, customer, count=100, first_occurred_at=RECENT, prefix="in_new_"
    )
    await insert_billing_rows(
        session, customer, count=100, first_occurred_at=OLD, status="open", prefix="in_open_"
    )
    all_ids = await _ids(session, BillingHistory)
    archivable_ids = all_ids[:10_000]
    every_row = await _every_row(session)

    with pytest.raises(SimulatedCrash):
        await _run(sessionmaker, clock, batch_size=250, crash_after_batches=20)

    hot_ids = await _ids(session, BillingHistory)
    archived_ids = await _ids(session, BillingHistoryArchive)
    assert len(archived_ids) == 5_000
    assert archived_ids == archivable_ids[:5_000]
    assert sorted(hot_ids + archived_ids) == all_ids

    clock.advance(timedelta(minutes=5))  # the operator runs it again a little later
    resumed = await _run(sessionmaker, clock, batch_size=250)

    assert (resumed.before.hot, resumed.before.archived, resumed.before.eligible) == (
        5_200,
        5_000,
        5_000,
    )
    assert resumed.after is not None
    assert (resumed.after.hot, resumed.after.archived, resumed.after.eligible) == (200, 10_000, 0)
    assert resumed.totals_match and resumed.moved == 5_000 and resumed.batches == 20
    hot_ids = await _ids(session, BillingHistory)
    archived_ids = await _ids(session, BillingHistoryArchive)
    assert archived_ids == archivable_ids
    assert sorted(hot_ids + archived_ids) == all_ids  # each id once, in one table
    assert await _every_row(session) == every_row  # and every column as it was
    archived_times = set(await session.scalars(select(BillingHistoryArchive.archived_at)))
    assert archived_times == {TEST_NOW, TEST_NOW + timedelta(minutes=5)}


async def test_a_batch_rolled_back_moves_nothing(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    await insert_billing_rows(session, customer, count=50, first_occurred_at=OLD)

    async with sessionmaker() as batch_session:
        moved = await archive.archive_one_batch(
            batch_session, cutoff=CUTOFF, batch_size=20, archived_at=clock.now()
        )
        assert len(moved) == 20
        await batch_session.rollback()  # the connection lost before the commit

    assert len(await _ids(session, BillingHistory)) == 50
    assert await _ids(session, BillingHistoryArchive) == []


async def test_only_settled_rows_older_than_the_cutoff_move(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    settled = [
        await _add_row(session, customer, status="paid", stripe_invoice_id="in_paid"),
        await _add_row(session, customer, status="void", stripe_invoice_id="in_void"),
        await _add_row(session, customer, status="uncollectible", stripe_invoice_id="in_unc"),
        await _add_row(session, customer, type="refund", status="refunded", stripe_refund_id="r1"),
        await _add_row(session, customer, type="refund", status="failed", stripe_refund_id="r2"),
        await _add_row(session, customer, type="refund", status="canceled", stripe_refund_id="r3"),
        await _add_row(
            session, customer, status="paid", occurred_at=CUTOFF - timedelta(microseconds=1)
        ),
    ]
    staying = [
        await _add_row(session, customer, status="open", stripe_invoice_id="in_open"),
        await _add_row(session, customer, status="draft", stripe_invoice_id="in_draft"),
        await _add_row(session, customer, type="refund", status="pending", stripe_refund_id="r4"),
        await _add_row(session, customer, type="overage", status="pending"),
        await _add_row(session, customer, status="paid", occurred_at=CUTOFF),
        await _add_row(session, customer, status="paid", occurred_at=RECENT),
    ]

    run = await _run(sessionmaker, clock)

    assert run.moved == len(settled)
    assert await _ids(session, BillingHistoryArchive) == [row.id for row in settled]
    assert await _ids(session, BillingHistory) == [row.id for row in staying]


async def test_a_dry_run_counts_and_moves_nothing(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    await insert_billing_rows(session, customer, count=30, first_occurred_at=OLD)
    await insert_billing_rows(
        session, customer, count=5, first_occurred_at=RECENT, prefix="in_new_"
    )

    run = await _run(sessionmaker, clock, dry_run=True)

    assert (run.before.hot, run.before.archived, run.before.eligible) == (35, 0, 30)
    assert (run.after, run.moved, run.batches) == (None, 0, 0)
    assert len(await _ids(session, BillingHistory)) == 35
    assert await _ids(session, BillingHistoryArchive) == []


async def test_two_runs_at_once_move_each_row_once(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    await insert_billing_rows(session, customer, count=2_000, first_occurred_at=OLD)
    all_ids = await _ids(session, BillingHistory)

    first, second = await asyncio.gather(
        _run(sessionmaker, clock, batch_size=100), _run(sessionmaker, clock, batch_size=100)
    )

    assert first.moved + second.moved == 2_000
    assert await _ids(session, BillingHistoryArchive) == all_ids
    assert await _ids(session, BillingHistory) == []


async def test_the_totals_cover_the_ids_a_run_started_with(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    await insert_billing_rows(session, customer, count=10, first_occurred_at=OLD)

    def new_invoice_meanwhile(batch: ArchivedBatch) -> None:
        # As a webhook would, while the run goes on; not counted on either side.
        async def insert() -> None:
            async with sessionmaker() as other:
                await create_billing_row(
                    other, customer, status="open", amount=1, occurred_at=TEST_NOW
                )

        tasks.append(asyncio.get_running_loop().create_task(insert()))

    tasks: list[asyncio.Task[None]] = []
    run = await archive.archive_billing_records(
        sessionmaker, clock=clock, older_than_days=730, batch_size=4, on_batch=new_invoice_meanwhile
    )
    await asyncio.gather(*tasks)

    assert run.after is not None and run.totals_match
    assert (run.before.total, run.after.total, run.after.archived) == (10, 10, 10)
    assert len(await _ids(session, BillingHistory)) == 3


@pytest.mark.parametrize(("days", "batch_size"), [(0, 10), (-1, 10), (730, 0)])
async def test_a_run_refuses_an_age_or_batch_size_below_one(
    sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock, days: int, batch_size: int
) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await archive.archive_billing_records(
            sessionmaker, clock=clock, older_than_days=days, batch_size=batch_size
        )


# --- reading archived rows ---------------------------------------------------------------


async def test_get_for_customer_finds_an_archived_row_by_its_id_and_not_another_customers(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    mine = await create_customer(session, dashboard_user_id="42")
    theirs = await create_customer(session, dashboard_user_id="43")
    old = await _add_row(
        session,
        mine,
        stripe_invoice_id="in_old",
        number="ACME-0001",
        invoice_pdf_url="https://pay.stripe.com/invoice/in_old/pdf",
    )
    recent = await _add_row(session, mine, stripe_invoice_id="in_recent", occurred_at=RECENT)
    await _run(sessionmaker, clock)

    found = await repository.get_for_customer(session, customer_id=mine.id, record_id=old.id)
    hot = await repository.get_for_customer(session, customer_id=mine.id, record_id=recent.id)
    not_theirs = await repository.get_for_customer(session, customer_id=theirs.id, record_id=old.id)
    unknown = await repository.get_for_customer(
        session, customer_id=mine.id, record_id=recent.id + 1
    )

    assert found is not None and found.archived and found.archived_at == TEST_NOW
    assert (found.id, found.customer_id, found.stripe_invoice_id, found.number) == (
        old.id,
        mine.id,
        "in_old",
        "ACME-0001",
    )
    assert found.invoice_pdf_url == "https://pay.stripe.com/invoice/in_old/pdf"
    assert (found.occurred_at, found.created_at) == (old.occurred_at, old.created_at)
    assert hot is not None and not hot.archived and hot.id == recent.id
    assert not_theirs is None and unknown is None


# --- late Stripe updates of archived rows --------------------------------------------------


async def _archived_invoice(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> tuple[Customer, int, BillingRecord]:
    customer, subscription = await create_subscribed_customer(session)
    row = await service.record_invoice(
        session,
        invoice=parse_invoice(
            invoice_payload("in_old", status="paid", created=int(OLD.timestamp()))
        ),
        customer_id=customer.id,
        subscription_id=subscription.id,
        add_on_price_ids=ADD_ON_PRICES,
    )
    await session.commit()
    await _run(sessionmaker, clock)
    return customer, subscription.id, row


async def test_a_late_update_of_an_archived_invoice_is_applied_in_the_archive(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer, subscription_id, original = await _archived_invoice(session, sessionmaker, clock)

    late = await service.record_invoice(
        session,
        invoice=parse_invoice(
            invoice_payload(
                "in_old", status="paid", number="ACME-LATE", created=int(OLD.timestamp())
            )
        ),
        customer_id=customer.id,
        subscription_id=None,
        add_on_price_ids=ADD_ON_PRICES,
    )
    await session.commit()

    assert late.archived and late.id == original.id
    assert (late.number, late.subscription_id) == ("ACME-LATE", subscription_id)
    assert await _ids(session, BillingHistory) == []
    assert await _ids(session, BillingHistoryArchive) == [original.id]


async def test_an_invoice_update_waiting_on_its_archive_batch_lands_in_the_archive(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    invoice = invoice_payload("in_race", status="paid", created=int(OLD.timestamp()))
    row = await service.record_invoice(
        session,
        invoice=parse_invoice(invoice),
        customer_id=customer.id,
        subscription_id=subscription.id,
        add_on_price_ids=ADD_ON_PRICES,
    )
    await session.commit()

    async def late_delivery() -> BillingRecord:
        async with sessionmaker() as webhook_session:
            record = await service.record_invoice(
                webhook_session,
                invoice=parse_invoice({**invoice, "number": "ACME-LATE"}),
                customer_id=customer.id,
                subscription_id=subscription.id,
                add_on_price_ids=ADD_ON_PRICES,
            )
            await webhook_session.commit()
            return record

    async with sessionmaker() as batch_session:
        moved = await archive.archive_one_batch(
            batch_session, cutoff=CUTOFF, batch_size=10, archived_at=clock.now()
        )
        assert moved == [row.id]
        delivery = asyncio.create_task(late_delivery())
        await asyncio.sleep(0.3)
        assert not delivery.done()  # its upsert waits on the row the batch is moving
        await batch_session.commit()
    record = await delivery

    assert record.archived and record.id == row.id and record.number == "ACME-LATE"
    assert await _ids(session, BillingHistory) == []
    assert await _ids(session, BillingHistoryArchive) == [row.id]


async def test_a_batch_skips_a_row_a_delivery_holds_and_it_stays_hot(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    invoice = invoice_payload("in_held", status="paid", created=int(OLD.timestamp()))
    row = await service.record_invoice(
        session,
        invoice=parse_invoice(invoice),
        customer_id=customer.id,
        subscription_id=subscription.id,
        add_on_price_ids=ADD_ON_PRICES,
    )
    await session.commit()

    async with sessionmaker() as webhook_session:
        await service.record_invoice(
            webhook_session,
            invoice=parse_invoice(invoice),
            customer_id=customer.id,
            subscription_id=subscription.id,
            add_on_price_ids=ADD_ON_PRICES,
        )
        run = await _run(sessionmaker, clock)
        await webhook_session.commit()

    assert run.moved == 0
    assert await _ids(session, BillingHistory) == [row.id]
    assert (await _run(sessionmaker, clock)).moved == 1  # the next run takes it


async def test_a_late_refund_update_and_a_refund_linked_to_an_archived_invoice(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer, subscription_id, _ = await _archived_invoice(session, sessionmaker, clock)
    old = int(OLD.timestamp())
    charge = charge_payload(
        amount_refunded=9_900,
        refunds=[refund_payload("re_old", amount=9_900, created=old)],
        invoice="in_old",
    )
    [refund] = await service.record_charge_refunds(
        session, charge=parse_charge(charge), customer_id=customer.id
    )
    await session.commit()
    assert refund.subscription_id == subscription_id  # read from the archived invoice row
    await _run(sessionmaker, clock)

    charge["refunds"]["data"][0]["status"] = "failed"
    [late] = await service.record_charge_refunds(
        session, charge=parse_charge(charge), customer_id=customer.id
    )
    await session.commit()

    assert late.archived and late.id == refund.id and late.status == "failed"
    assert await _ids(session, BillingHistory) == []
    archived_refunds = await session.scalars(
        select(BillingHistoryArchive.status).where(BillingHistoryArchive.type == "refund")
    )
    assert list(archived_refunds) == ["failed"]


async def test_itemized_refunds_replace_an_archived_running_total(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    await service.record_charge_refunds(
        session,
        charge=parse_charge(charge_payload(amount_refunded=9_900)),
        customer_id=customer.id,
        refunded_at=OLD,
    )
    await session.commit()
    assert (await _run(sessionmaker, clock)).moved == 1

    charge = charge_payload(
        amount_refunded=9_900,
        refunds=[refund_payload("re_itemized", amount=9_900, created=int(OLD.timestamp()))],
    )
    await service.record_charge_refunds(
        session, charge=parse_charge(charge), customer_id=customer.id
    )
    await session.commit()

    refund_ids = select(func.count()).where(BillingHistoryArchive.type == "refund")
    assert await session.scalar(refund_ids) == 0
    assert [row.stripe_refund_id for row in await session.scalars(select(BillingHistory))] == [
        "re_itemized"
    ]


async def test_an_archived_overage_row_follows_a_late_invoice_update(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    charge = await create_overage_charge(
        session,
        subscription,
        period_start=OLD,
        period_end=OLD + timedelta(days=31),
        minutes_over=Decimal(10),
        minutes_amount=25,
        status="invoiced",
        stripe_invoice_id="in_old",
        created_at=OLD,
        invoiced_at=OLD,
    )
    row = await _add_row(
        session,
        customer,
        subscription_id=subscription.id,
        type="overage",
        status="uncollectible",
        overage_charge_id=charge.id,
        stripe_invoice_id="in_old",
    )
    assert (await _run(sessionmaker, clock)).moved == 1

    await record_invoice_overage(
        session,
        invoice=parse_invoice(
            {"id": "in_old", "status": "paid", "number": "ACME-9", "metadata": {}}
        ),
        customer_id=customer.id,
        subscription_id=subscription.id,
        now=clock.now(),
    )
    await session.commit()

    archived = await repository.get_for_customer(session, customer_id=customer.id, record_id=row.id)
    assert archived is not None and archived.archived
    assert (archived.status, archived.number) == ("paid", "ACME-9")
