import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import archive
from app.billing_history.router import router
from app.models import BillingHistory, Customer
from tests.conftest import TokenFactory, bearer
from tests.factories import create_billing_row, create_customer

HISTORY = "/subscriptions/api/billing-history/"
START = datetime(2026, 11, 1, tzinfo=UTC)

ENTRY_FIELDS = {
    "id",
    "type",
    "status",
    "amount",
    "amount_paid",
    "amount_due",
    "currency",
    "description",
    "billing_reason",
    "period_start",
    "period_end",
    "number",
    "hosted_invoice_url",
    "invoice_pdf_url",
    "stripe_invoice_id",
    "stripe_charge_id",
    "stripe_refund_id",
    "occurred_at",
    "archived",
}


@pytest.fixture(autouse=True)
def _billing_history_mounted(app: FastAPI) -> None:
    # Until app/main.py registers the router, mount it here the way main.py will.
    if not any(
        getattr(route, "path", "").startswith("/subscriptions/api/billing-history")
        for route in app.routes
    ):
        app.include_router(router, prefix="/subscriptions/api")


async def _add_row(
    session: AsyncSession, customer: Customer, occurred_at: datetime, **overrides: Any
) -> BillingHistory:
    """A paid renewal invoice at `occurred_at`, with an invoice id of its own."""
    invoice_id = f"in_{customer.id}_{int(occurred_at.timestamp())}_{overrides.get('status', '')}"
    values: dict[str, Any] = {
        "amount_paid": 9_900,
        "amount_due": 9_900,
        "billing_reason": "subscription_cycle",
        "stripe_invoice_id": invoice_id,
        "occurred_at": occurred_at,
        **overrides,
    }
    return await create_billing_row(session, customer, **values)


async def _page(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(HISTORY, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(HISTORY)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_an_entry_has_the_documented_fields(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    customer = await create_customer(session)
    row = await _add_row(
        session,
        customer,
        START,
        number="ACME-0001",
        period_start=START,
        period_end=START + timedelta(days=30),
        hosted_invoice_url="https://invoice.stripe.com/i/x",
        invoice_pdf_url="https://pay.stripe.com/invoice/x/pdf",
    )

    body = await _page(client, bearer(make_token("42")))

    assert body["success"] is True and body["next_cursor"] is None
    [entry] = body["billing_history"]
    assert set(entry) == ENTRY_FIELDS
    assert entry["id"] == row.id
    assert (entry["type"], entry["status"], entry["amount"]) == ("subscription", "paid", 9_900)
    assert entry["number"] == "ACME-0001"
    assert entry["archived"] is False
    assert datetime.fromisoformat(entry["occurred_at"]) == START
    assert datetime.fromisoformat(entry["period_end"]) == START + timedelta(days=30)


async def test_rows_come_newest_first_in_cursor_pages(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    customer = await create_customer(session)
    oldest = await _add_row(session, customer, START)
    # Two rows at the same instant: the id orders them, and no page repeats or skips one.
    tied_first = await _add_row(session, customer, START + timedelta(days=1), status="open")
    tied_second = await _add_row(session, customer, START + timedelta(days=1), status="void")
    newest = await _add_row(session, customer, START + timedelta(days=2))
    headers = bearer(make_token("42"))

    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = await _page(client, headers, **params)
        pages.append([entry["id"] for entry in body["billing_history"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == [[newest.id, tied_second.id], [tied_first.id, oldest.id]]
    everything = await _page(client, headers)
    assert [entry["id"] for entry in everything["billing_history"]] == [
        newest.id,
        tied_second.id,
        tied_first.id,
        oldest.id,
    ]
    assert everything["next_cursor"] is None


async def test_filters_by_type_and_status_and_pages_within_the_filter(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    customer = await create_customer(session)
    paid = await _add_row(session, customer, START)
    await _add_row(session, customer, START + timedelta(days=1), status="open")
    refund = await _add_row(
        session,
        customer,
        START + timedelta(days=2),
        type="refund",
        status="refunded",
        amount=1_000,
        amount_paid=0,
        amount_due=0,
        stripe_invoice_id=None,
        stripe_charge_id="ch_1",
        stripe_refund_id="re_1",
    )
    later_paid = await _add_row(session, customer, START + timedelta(days=3))
    headers = bearer(make_token("42"))

    refunds = await _page(client, headers, type="refund")
    paid_first = await _page(client, headers, status="paid", limit=1)
    paid_rest = await _page(
        client, headers, status="paid", limit=1, cursor=paid_first["next_cursor"]
    )
    paid_subscriptions = await _page(client, headers, type="subscription", status="paid")
    overages = await _page(client, headers, type="overage")

    assert [e["id"] for e in refunds["billing_history"]] == [refund.id]
    assert refunds["billing_history"][0]["stripe_refund_id"] == "re_1"
    assert [e["id"] for e in paid_first["billing_history"]] == [later_paid.id]
    assert [e["id"] for e in paid_rest["billing_history"]] == [paid.id]
    assert paid_rest["next_cursor"] is None
    assert [e["id"] for e in paid_subscriptions["billing_history"]] == [later_paid.id, paid.id]
    assert overages["billing_history"] == []


async def test_an_unknown_type_a_status_that_is_no_status_or_a_limit_out_of_range_is_422(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    headers = bearer(make_token("42"))
    invalid = (
        {"type": "invoice"},
        {"status": "paid\x00"},  # PostgreSQL text cannot hold NUL: this was a 500
        {"status": "Paid!"},
        {"limit": 0},
        {"limit": 101},
    )

    responses = [await client.get(HISTORY, params=params, headers=headers) for params in invalid]

    assert [r.status_code for r in responses] == [422] * len(invalid)
    assert {r.json()["error"]["code"] for r in responses} == {"validation_error"}


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor!",
        "%%%",
        _encoded("yesterday|1"),
        _encoded("2026-11-01T00:00:00+00:00"),
        _encoded("2026-11-01T00:00:00|1"),  # no time zone
        _encoded("2026-11-01T00:00:00+00:00|0"),
        _encoded("2026-11-01T00:00:00+00:00|-1"),
        _encoded(f"2026-11-01T00:00:00+00:00|{2**63}"),
        base64.urlsafe_b64encode(b"\xff\xfe|1").decode(),
    ],
)
async def test_a_malformed_cursor_is_422_invalid_cursor(
    client: httpx.AsyncClient, make_token: TokenFactory, cursor: str
) -> None:
    response = await client.get(
        HISTORY, params={"cursor": cursor}, headers=bearer(make_token("42"))
    )

    assert response.status_code == 422, response.text
    assert response.json() == {
        "success": False,
        "error": {
            "code": "invalid_cursor",
            "message": "The cursor is not one this API returned; start again without it.",
            "details": None,
        },
    }


async def test_another_customers_rows_never_appear(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    mine = await create_customer(session, dashboard_user_id="42")
    theirs = await create_customer(session, dashboard_user_id="43")
    my_row = await _add_row(session, mine, START)
    their_row = await _add_row(session, theirs, START + timedelta(days=1))
    their_newer_row = await _add_row(session, theirs, START + timedelta(days=2))

    my_page = await _page(client, bearer(make_token("42")))
    # A cursor taken from their list still only pages my rows.
    their_first = await _page(client, bearer(make_token("43")), limit=1)
    mine_after_their_cursor = await _page(
        client, bearer(make_token("42")), cursor=their_first["next_cursor"]
    )
    stranger = await _page(client, bearer(make_token("44")))

    assert [e["id"] for e in my_page["billing_history"]] == [my_row.id]
    assert [e["id"] for e in their_first["billing_history"]] == [their_newer_row.id]
    assert their_row.id not in [e["id"] for e in mine_after_their_cursor["billing_history"]]
    assert [e["id"] for e in mine_after_their_cursor["billing_history"]] == [my_row.id]
    assert stranger["billing_history"] == []


async def test_the_path_answers_without_its_trailing_slash(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    response = await client.get(HISTORY.rstrip("/"), headers=bearer(make_token("42")))

    assert response.status_code == 200
    assert response.json() == {"success": True, "billing_history": [], "next_cursor": None}


async def _archive_rows_before(
    sessionmaker: async_sessionmaker[AsyncSession], cutoff: datetime
) -> list[int]:
    async with sessionmaker.begin() as session:
        return await archive.archive_one_batch(
            session, cutoff=cutoff, batch_size=100, archived_at=cutoff
        )


async def _all_pages(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        body = await _page(client, headers, **params, **({"cursor": cursor} if cursor else {}))
        pages.append([entry["id"] for entry in body["billing_history"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_include_archived_pages_across_both_tables_in_one_order(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    customer = await create_customer(session)
    oldest = await _add_row(session, customer, START)
    old = await _add_row(session, customer, START + timedelta(days=1))
    # Tied on occurred_at, one archived (paid) and one not (open): the id still orders them.
    tied_archived = await _add_row(session, customer, START + timedelta(days=2))
    tied_open = await _add_row(session, customer, START + timedelta(days=2), status="open")
    newer = await _add_row(session, customer, START + timedelta(days=3))
    newest = await _add_row(session, customer, START + timedelta(days=4))
    archived_ids = await _archive_rows_before(sessionmaker, START + timedelta(days=3))
    assert archived_ids == [oldest.id, old.id, tied_archived.id]
    headers = bearer(make_token("42"))

    everything = await _page(client, headers, include_archived="true")
    pages = await _all_pages(client, headers, include_archived="true", limit=2)
    hot_only = await _all_pages(client, headers, limit=2)

    assert [(e["id"], e["archived"]) for e in everything["billing_history"]] == [
        (newest.id, False),
        (newer.id, False),
        (tied_open.id, False),
        (tied_archived.id, True),
        (old.id, True),
        (oldest.id, True),
    ]
    assert everything["next_cursor"] is None
    assert pages == [[newest.id, newer.id], [tied_open.id, tied_archived.id], [old.id, oldest.id]]
    assert hot_only == [[newest.id, newer.id], [tied_open.id]]


async def test_include_archived_keeps_the_filters_and_the_customer(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    mine = await create_customer(session, dashboard_user_id="42")
    theirs = await create_customer(session, dashboard_user_id="43")
    my_paid = await _add_row(session, mine, START)
    my_void = await _add_row(session, mine, START + timedelta(days=1), status="void")
    await _add_row(session, theirs, START + timedelta(days=2))
    assert len(await _archive_rows_before(sessionmaker, START + timedelta(days=3))) == 3
    headers = bearer(make_token("42"))

    paid = await _page(client, headers, include_archived="true", status="paid")
    refunds = await _page(client, headers, include_archived="true", type="refund")
    everything = await _page(client, headers, include_archived="true")
    default = await _page(client, headers)

    assert [e["id"] for e in paid["billing_history"]] == [my_paid.id]
    assert refunds["billing_history"] == []
    assert [e["id"] for e in everything["billing_history"]] == [my_void.id, my_paid.id]
    assert default["billing_history"] == []
