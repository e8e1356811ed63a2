import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import service
from app.billing_history.records import BillingRecord
from app.models import BillingHistory
from app.stripe_gateway.parsing import parse_charge, parse_invoice
from tests.billing_history.payloads import (
    ADD_ON_PRICE,
    ADD_ON_PRICES,
    CREATED,
    PERIOD_END,
    PERIOD_START,
    charge_payload,
    invoice_line,
    invoice_payload,
    refund_payload,
)
from tests.factories import create_customer, create_subscribed_customer


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


async def _rows(session: AsyncSession) -> list[BillingHistory]:
    query = select(BillingHistory).order_by(BillingHistory.id)
    return list(await session.scalars(query.execution_options(populate_existing=True)))


async def _record(
    session: AsyncSession, invoice: dict[str, Any], customer_id: int, subscription_id: int | None
) -> BillingRecord:
    return await service.record_invoice(
        session,
        invoice=parse_invoice(invoice),
        customer_id=customer_id,
        subscription_id=subscription_id,
        add_on_price_ids=ADD_ON_PRICES,
    )


async def test_an_invoice_is_recorded_with_its_amounts_links_and_billed_period(
    session: AsyncSession,
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    early = PERIOD_START - 86_400
    invoice = invoice_payload(
        "in_full",
        status="paid",
        description="Growth, November",
        lines=[
            invoice_line(9_900),
            invoice_line(2_000, price=ADD_ON_PRICE, start=early, end=PERIOD_END - 86_400),
        ],
    )

    row = await _record(session, invoice, customer.id, subscription.id)
    await session.commit()

    assert (row.customer_id, row.subscription_id) == (customer.id, subscription.id)
    assert (row.type, row.status, row.billing_reason) == (
        "subscription",
        "paid",
        "subscription_cycle",
    )
    assert (row.amount, row.amount_paid, row.amount_due, row.currency) == (
        11_900,
        11_900,
        11_900,
        "usd",
    )
    assert all(type(value) is int for value in (row.amount, row.amount_paid, row.amount_due))
    assert (row.period_start, row.period_end) == (_at(early), _at(PERIOD_END))
    assert (row.description, row.number) == ("Growth, November", "ACME-0001")
    assert row.hosted_invoice_url == "https://invoice.stripe.com/i/in_full"
    assert row.invoice_pdf_url == "https://pay.stripe.com/invoice/in_full/pdf"
    assert (row.stripe_invoice_id, row.stripe_charge_id, row.stripe_refund_id) == (
        "in_full",
        None,
        None,
    )
    assert row.occurred_at == _at(CREATED)


async def test_an_invoice_without_lines_takes_the_invoices_own_period(
    session: AsyncSession,
) -> None:
    customer, _ = await create_subscribed_customer(session)
    invoice = invoice_payload("in_empty", lines=[], billing_reason="manual")

    row = await _record(session, invoice, customer.id, None)

    assert (row.period_start, row.period_end) == (
        _at(invoice["period_start"]),
        _at(invoice["period_end"]),
    )
    assert (row.type, row.amount, row.subscription_id) == ("subscription", 0, None)


async def test_a_redelivered_invoice_updates_its_one_row_from_open_to_paid(
    session: AsyncSession,
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    opened = await _record(
        session, invoice_payload("in_1", status="open"), customer.id, subscription.id
    )
    await session.commit()
    assert (opened.status, opened.amount_paid) == ("open", 0)

    paid = await _record(session, invoice_payload("in_1", status="paid"), customer.id, None)
    await session.commit()

    [row] = await _rows(session)
    assert paid.id == opened.id == row.id
    assert (row.status, row.amount_paid, row.amount_due) == ("paid", 9_900, 9_900)
    # A delivery that could not resolve the subscription leaves the link in place.
    assert row.subscription_id == subscription.id


async def test_ten_concurrent_deliveries_of_one_invoice_are_one_row(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    customer, subscription = await create_subscribed_customer(session)

    async def deliver(status: str) -> int:
        async with sessionmaker() as own_session:
            row = await _record(
                own_session, invoice_payload("in_race", status=status), customer.id, subscription.id
            )
            await own_session.commit()
            return row.id

    ids = await asyncio.gather(*(deliver("open") for _ in range(10)))

    assert len(set(ids)) == 1
    assert len(await _rows(session)) == 1


async def test_the_same_invoice_recorded_ten_times_in_a_row_is_one_row(
    session: AsyncSession,
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    for _ in range(10):
        await _record(session, invoice_payload("in_again"), customer.id, subscription.id)
        await session.commit()

    assert [row.stripe_invoice_id for row in await _rows(session)] == ["in_again"]


@pytest.mark.parametrize(
    ("billing_reason", "lines", "metadata", "expected"),
    [
        ("subscription_create", [invoice_line(9_900)], {}, "subscription"),
        ("subscription_cycle", [invoice_line(9_900)], {}, "subscription"),
        (
            "subscription_cycle",
            [invoice_line(9_900), invoice_line(2_000, price=ADD_ON_PRICE)],
            {},
            "subscription",
        ),
        ("subscription_update", [invoice_line(4_000)], {}, "proration"),
        (
            "subscription_cycle",
            [invoice_line(9_900), invoice_line(-1_000, proration=True)],
            {},
            "proration",
        ),
        ("manual", [invoice_line(2_000, price=ADD_ON_PRICE)], {}, "add_on"),
        (
            "manual",
            [invoice_line(2_000, price=ADD_ON_PRICE), invoice_line(2_000, price=ADD_ON_PRICE)],
            {},
            "add_on",
        ),
        (
            "manual",
            [invoice_line(750, price="price_usage")],
            {"billing_type": "overage"},
            "overage",
        ),
        # Our own mark wins over anything read from the lines.
        (
            "subscription_update",
            [invoice_line(750, proration=True)],
            {"billing_type": "overage"},
            "overage",
        ),
        ("manual", [], {}, "subscription"),
    ],
)
async def test_invoice_type_is_classified_from_reason_lines_and_metadata(
    session: AsyncSession,
    billing_reason: str,
    lines: list[dict[str, Any]],
    metadata: dict[str, str],
    expected: str,
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    invoice = invoice_payload(billing_reason=billing_reason, lines=lines, metadata=metadata)

    row = await _record(session, invoice, customer.id, subscription.id)

    assert row.type == expected


async def test_an_expanded_price_on_a_line_is_read_by_its_id(session: AsyncSession) -> None:
    customer, _ = await create_subscribed_customer(session)
    line = invoice_line(2_000)
    line["pricing"]["price_details"]["price"] = {"id": ADD_ON_PRICE, "object": "price"}

    row = await _record(
        session, invoice_payload(lines=[line], billing_reason="manual"), customer.id, None
    )

    assert row.type == "add_on"


async def test_a_reclassified_redelivery_changes_the_type(session: AsyncSession) -> None:
    customer, _ = await create_subscribed_customer(session)
    line = invoice_line(750, price="price_usage")
    await _record(
        session,
        invoice_payload("in_usage", lines=[line], billing_reason="manual"),
        customer.id,
        None,
    )

    marked = invoice_payload(
        "in_usage", lines=[line], billing_reason="manual", metadata={"billing_type": "overage"}
    )
    row = await _record(session, marked, customer.id, None)

    assert row.type == "overage"
    assert len(await _rows(session)) == 1


async def test_a_non_integer_amount_is_refused_not_rounded(session: AsyncSession) -> None:
    customer, _ = await create_subscribed_customer(session)

    with pytest.raises(ValueError, match="minor units"):
        await _record(session, invoice_payload(total=99.5), customer.id, None)


async def test_itemized_refunds_are_one_row_each_and_follow_their_status(
    session: AsyncSession,
) -> None:
    customer, _ = await create_subscribed_customer(session)
    first = refund_payload("re_1", amount=1_000, created=CREATED + 60)
    second = refund_payload("re_2", amount=500, created=CREATED + 120, status="pending")
    charge = charge_payload(amount_refunded=1_500, refunds=[first, second])

    rows = await service.record_charge_refunds(
        session, charge=parse_charge(charge), customer_id=customer.id
    )
    await session.commit()

    assert [(r.stripe_refund_id, r.status, r.amount) for r in rows] == [
        ("re_1", "refunded", 1_000),
        ("re_2", "pending", 500),
    ]
    assert {(r.type, r.stripe_charge_id, r.stripe_invoice_id, r.currency) for r in rows} == {
        ("refund", "ch_test_1", None, "usd")
    }
    assert [r.occurred_at for r in rows] == [_at(CREATED + 60), _at(CREATED + 120)]

    second["status"] = "succeeded"
    await service.record_charge_refunds(
        session, charge=parse_charge(charge), customer_id=customer.id
    )
    await session.commit()

    assert [(r.stripe_refund_id, r.status) for r in await _rows(session)] == [
        ("re_1", "refunded"),
        ("re_2", "refunded"),
    ]


async def test_a_charge_without_its_refunds_keeps_one_running_total(
    session: AsyncSession,
) -> None:
    customer, _ = await create_subscribed_customer(session)
    refunded_at = datetime(2026, 11, 20, tzinfo=UTC)

    [partial] = await service.record_charge_refunds(
        session,
        charge=parse_charge(charge_payload(amount_refunded=1_000)),
        customer_id=customer.id,
        refunded_at=refunded_at,
    )
    await session.commit()
    [full] = await service.record_charge_refunds(
        session, charge=parse_charge(charge_payload(amount_refunded=9_900)), customer_id=customer.id
    )
    await session.commit()

    [row] = await _rows(session)
    assert partial.id == full.id == row.id
    assert (row.type, row.status, row.amount) == ("refund", "refunded", 9_900)
    assert (row.stripe_refund_id, row.stripe_charge_id) == ("ch_test_1:refunds", "ch_test_1")
    # Still where it first appeared in the list.
    assert row.occurred_at == refunded_at


async def test_a_refund_is_linked_to_the_invoice_its_charge_names(
    session: AsyncSession,
) -> None:
    customer, subscription = await create_subscribed_customer(session)
    invoice = invoice_payload("in_refunded", status="paid")
    await _record(session, invoice, customer.id, subscription.id)
    charge = charge_payload(
        amount_refunded=9_900,
        refunds=[refund_payload("re_full", amount=9_900)],
        invoice={"id": "in_refunded", "object": "invoice"},
    )

    [refund] = await service.record_charge_refunds(
        session, charge=parse_charge(charge), customer_id=customer.id
    )
    # The invoice's row is keyed apart from the refund that names the same invoice.
    await _record(session, invoice, customer.id, subscription.id)
    await session.commit()

    assert (refund.stripe_invoice_id, refund.subscription_id) == ("in_refunded", subscription.id)
    assert [(r.type, r.stripe_invoice_id) for r in await _rows(session)] == [
        ("subscription", "in_refunded"),
        ("refund", "in_refunded"),
    ]


async def test_itemized_refunds_replace_the_running_total_and_are_not_counted_twice(
    session: AsyncSession,
) -> None:
    customer, _ = await create_subscribed_customer(session)
    await service.record_charge_refunds(
        session, charge=parse_charge(charge_payload(amount_refunded=1_000)), customer_id=customer.id
    )
    itemized = charge_payload(amount_refunded=1_000, refunds=[refund_payload("re_1", amount=1_000)])

    await service.record_charge_refunds(
        session, charge=parse_charge(itemized), customer_id=customer.id
    )
    later_running_total = await service.record_charge_refunds(
        session, charge=parse_charge(charge_payload(amount_refunded=1_000)), customer_id=customer.id
    )
    await session.commit()

    assert later_running_total == []
    assert [(r.stripe_refund_id, r.amount) for r in await _rows(session)] == [("re_1", 1_000)]


async def test_a_charge_with_nothing_refunded_writes_no_row(session: AsyncSession) -> None:
    customer = await create_customer(session)
    untouched = charge_payload(amount_refunded=0, refunds=[])
    unlisted = charge_payload("ch_test_2", amount_refunded=0)

    assert (
        await service.record_charge_refunds(
            session, charge=parse_charge(untouched), customer_id=customer.id
        )
        == []
    )
    assert (
        await service.record_charge_refunds(
            session, charge=parse_charge(unlisted), customer_id=customer.id
        )
        == []
    )
    assert await _rows(session) == []
