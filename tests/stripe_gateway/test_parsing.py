"""Stripe's objects read into our types: what the domains get instead of Stripe's dicts."""

from datetime import UTC, datetime
from typing import Any

import pytest

from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.parsing import (
    NotAStripeEvent,
    event_object,
    parse_charge,
    parse_customer,
    parse_event,
    parse_invoice,
    parse_schedule,
    parse_setup_intent,
)
from tests.stripe.fake import FakeStripe
from tests.stripe.fixtures import stripe_fixture

START = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _line(*, proration: bool, price: Any = "price_pro_month", item: bool = True) -> Any:
    line = stripe_fixture("line_item")
    line.update(
        period={"start": START, "end": END},
        parent={
            "type": "subscription_item_details" if item else "invoice_item_details",
            "invoice_item_details": None if item else {"proration": False},
            "subscription_item_details": {"proration": proration} if item else None,
        },
        pricing={"type": "price_details", "price_details": {"price": price}},
        metadata={"overage_charge_id": "7"},
    )
    return line


def test_an_invoice_names_its_subscription_lines_and_amounts() -> None:
    invoice = stripe_fixture("invoice")
    invoice.update(
        id="in_1",
        customer={"id": "cus_1", "object": "customer"},
        parent={"subscription_details": {"subscription": "sub_1"}},
        status="paid",
        total=9_900,
        amount_paid=9_900,
        amount_due=9_900,
        created=START,
        attempt_count=2,
        invoice_pdf="https://pay.stripe.com/invoice/in_1/pdf",
        lines={
            "object": "list",
            "data": [
                _line(proration=False),
                _line(proration=True, price={"id": "price_x", "object": "price"}),
                _line(proration=False, item=False),
            ],
            "has_more": False,
        },
    )

    state = parse_invoice(invoice)

    assert (state.id, state.customer_id, state.subscription_id) == ("in_1", "cus_1", "sub_1")
    assert (state.status, state.total, state.amount_paid, state.attempt_count) == (
        "paid",
        9_900,
        9_900,
        2,
    )
    assert state.created == _at(START)
    assert state.invoice_pdf_url == "https://pay.stripe.com/invoice/in_1/pdf"
    assert [
        (line.price_id, line.for_subscription_item, line.proration) for line in state.lines
    ] == [
        ("price_pro_month", True, False),
        ("price_x", True, True),
        ("price_pro_month", False, False),
    ]
    assert state.lines[0].period_start == _at(START)
    assert state.lines[0].metadata == {"overage_charge_id": "7"}


def test_an_amount_that_is_not_whole_minor_units_is_refused() -> None:
    invoice = stripe_fixture("invoice")
    invoice.update(total=99.5)

    with pytest.raises(ValueError, match="minor units"):
        parse_invoice(invoice)


def test_a_charge_carries_its_refunds_only_when_expanded() -> None:
    charge = stripe_fixture("charge")
    charge.update(id="ch_1", amount_refunded=1_500, invoice={"id": "in_1", "object": "invoice"})
    charge.pop("refunds", None)
    refund = stripe_fixture("refund")
    refund.update(id="re_1", amount=1_500, status="succeeded", created=END)

    unexpanded = parse_charge(charge)
    expanded = parse_charge({**charge, "refunds": {"object": "list", "data": [refund]}})

    assert (unexpanded.id, unexpanded.amount_refunded, unexpanded.invoice_id) == (
        "ch_1",
        1_500,
        "in_1",
    )
    assert unexpanded.refunds == ()
    assert [(r.id, r.amount, r.status, r.created) for r in expanded.refunds] == [
        ("re_1", 1_500, "succeeded", _at(END))
    ]


def test_a_released_schedule_names_the_subscription_it_released() -> None:
    schedule = stripe_fixture("subscription_schedule")
    schedule.update(
        id="sub_sched_1",
        status="released",
        subscription=None,
        released_subscription="sub_1",
        phases=[
            {"start_date": START, "end_date": END, "items": [{"price": "price_a", "quantity": 1}]},
            {"start_date": END, "end_date": None, "items": [{"price": {"id": "price_b"}}]},
        ],
    )

    state = parse_schedule(schedule)

    assert (state.subscription_id, state.current_phase_end) == ("sub_1", _at(END))
    assert state.next_phase_price_ids == ("price_b",)


def test_a_customer_and_a_setup_intent_read_expanded_or_not() -> None:
    customer = stripe_fixture("customer")
    customer.update(
        id="cus_1",
        email="",
        metadata={"dashboard_user_id": "42"},
        invoice_settings={"default_payment_method": {"id": "pm_1", "object": "payment_method"}},
    )
    card = stripe_fixture("payment_method")
    card.update(id="pm_2")
    setup_intent = stripe_fixture("setup_intent")
    setup_intent.update(id="seti_1", customer="cus_1", payment_method=card)

    state = parse_customer(customer)
    intent = parse_setup_intent(setup_intent)

    assert (state.id, state.dashboard_user_id, state.email) == ("cus_1", "42", None)
    assert state.default_payment_method_id == "pm_1"
    assert (intent.customer_id, intent.payment_method_id) == ("cus_1", "pm_2")
    assert intent.payment_method is not None and intent.payment_method.id == "pm_2"
    assert parse_setup_intent({**setup_intent, "payment_method": "pm_3"}).payment_method is None


def test_an_event_keeps_its_payload_and_names_its_object() -> None:
    event = stripe_fixture("event")
    event.update(
        id="evt_1",
        type="invoice.paid",
        created=START,
        api_version=5,
        livemode=True,
        data={"object": {"id": "in_1", "object": "invoice"}},
    )

    envelope = parse_event(event)

    assert (envelope.id, envelope.type, envelope.created) == ("evt_1", "invoice.paid", _at(START))
    assert (envelope.object_type, envelope.object_id) == ("invoice", "in_1")
    # Not a version string: none, so processing settles the object from Stripe.
    assert (envelope.api_version, envelope.livemode) == (None, True)
    assert envelope.payload is event
    assert event_object(envelope.payload) == {"id": "in_1", "object": "invoice"}
    assert event_object(None) is None


@pytest.mark.parametrize(
    "change",
    [{"data": []}, {"data": {"object": "x"}}, {"created": 10**13}, {"created": True}, {"id": ""}],
)
def test_a_body_not_shaped_like_an_event_is_refused(change: dict[str, Any]) -> None:
    event = stripe_fixture("event")
    event.update(created=START, data={"object": {"id": "in_1"}})
    event.update(change)

    with pytest.raises(NotAStripeEvent):
        parse_event(event)


# --- the gateway's typed reads -------------------------------------------------------


async def test_what_stripe_no_longer_has_is_none(gateway: StripeGateway, fake: FakeStripe) -> None:
    assert await gateway.find_invoice("in_missing") is None
    assert await gateway.find_subscription("sub_missing") is None
    assert await gateway.find_payment_method("pm_card_missing") is None


async def test_a_fetched_invoice_and_the_listed_customers_are_typed(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer = fake.add_customer(email="ada@example.com", metadata={"dashboard_user_id": "42"})
    invoice = fake.add_invoice(
        customer=customer["id"],
        lines=[fake.new_line(2_900, description="Pro", price="price_pro_month")],
    )

    found = await gateway.find_invoice(invoice["id"])
    [stripe_customer] = await gateway.list_customers()

    assert found is not None
    assert (found.id, found.customer_id, found.status, found.total) == (
        invoice["id"],
        customer["id"],
        "open",
        2_900,
    )
    assert [line.price_id for line in found.lines] == ["price_pro_month"]
    assert (stripe_customer.id, stripe_customer.dashboard_user_id) == (customer["id"], "42")
