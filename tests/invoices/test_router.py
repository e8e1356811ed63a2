import base64
import hashlib
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing_history.archive import archive_billing_records
from app.core.clock import FrozenClock
from app.models import Customer, InvoiceDocument
from tests.conftest import TokenFactory, bearer
from tests.factories import create_customer
from tests.invoices.helpers import (
    add_invoice_entry,
    growth_invoice,
    noise_png,
    pdf_pages,
    pdf_text,
    png_logo,
    svg_logo,
)
from tests.stripe.fake import FakeStripe

API = "/subscriptions/api"


def pdf_path(record_id: int) -> str:
    return f"{API}/billing-history/{record_id}/pdf/"


def branding_path(dashboard_user_id: str) -> str:
    return f"{API}/admin/customers/{dashboard_user_id}/branding/"


def logo_upload(data: bytes, media_type: str = "image/png") -> dict[str, str]:
    return {"media_type": media_type, "data": base64.b64encode(data).decode()}


def acme_branding(**overrides: Any) -> dict[str, Any]:
    return {
        "company_name": "Acme White Label Ltd",
        "address_lines": ["1 Main Street", "Springfield, IL 62701"],
        "tax_id": "US 12-3456789",
        "primary_color": "#C0392B",
        "footer_text": "Acme Ltd, registered in Springfield",
        "invoice_number_prefix": "WL-",
        "logo": logo_upload(png_logo()),
        **overrides,
    }


@pytest.fixture
def admin(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token("9008", roles=["billing_admin"]))


async def _customer_with_invoice(
    session: AsyncSession, fake: FakeStripe, user_id: str, **invoice_fields: Any
) -> tuple[Customer, int, dict[str, Any]]:
    stripe_customer = fake.add_customer(email=f"user{user_id}@example.com")
    stripe_customer["name"] = f"Customer {user_id} Inc."
    customer = await create_customer(
        session, dashboard_user_id=user_id, stripe_customer_id=stripe_customer["id"]
    )
    invoice = growth_invoice(fake, stripe_customer["id"], **invoice_fields)
    entry = await add_invoice_entry(session, customer, invoice)
    return customer, entry.id, invoice


async def _download(client: httpx.AsyncClient, token: str, record_id: int) -> httpx.Response:
    return await client.get(pdf_path(record_id), headers=bearer(token))


async def test_a_white_labelled_pdf_carries_the_customers_branding_number_and_totals(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    admin: dict[str, str],
) -> None:
    _, record_id, _ = await _customer_with_invoice(session, fake_stripe, "42")
    put = await client.put(branding_path("42"), json=acme_branding(), headers=admin)
    assert put.status_code == 200, put.text

    response = await _download(client, make_token("42"), record_id)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert response.headers["content-disposition"] == 'inline; filename="invoice-WL-FAKE-0001.pdf"'
    assert response.headers["etag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
    text = pdf_text(response.content)
    for expected in (
        "Acme White Label Ltd",
        "1 Main Street",
        "WL-FAKE-0001",
        "Customer 42 Inc.",
        "Subtotal $147.33",
        "Discount (Launch, 10% off) -$14.73",
        "VAT 19% (DE) on $132.60 $25.19",
        "Total $157.79",
        "Amount paid $157.79",
        "Amount due $0.00",
        "Acme Ltd, registered in Springfield",
    ):
        assert expected in text, expected
    assert "Call Center Billing" not in text


async def test_another_customers_pdf_carries_the_services_own_branding(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    admin: dict[str, str],
) -> None:
    await _customer_with_invoice(session, fake_stripe, "42", number="FAKE-0001")
    _, their_record, _ = await _customer_with_invoice(
        session, fake_stripe, "43", number="FAKE-0002", status="open"
    )
    assert (await client.put(branding_path("42"), json=acme_branding(), headers=admin)).is_success

    response = await _download(client, make_token("43"), their_record)

    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    assert "Call Center Billing" in text
    assert "Acme White Label Ltd" not in text
    assert "FAKE-0002" in text and "WL-" not in text
    assert "Open" in text and "$157.79 due" in text
    assert "Thank you for your business." in text


async def test_later_downloads_return_the_same_bytes_after_the_branding_changed(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    admin: dict[str, str],
) -> None:
    _, record_id, invoice = await _customer_with_invoice(session, fake_stripe, "42")
    assert (await client.put(branding_path("42"), json=acme_branding(), headers=admin)).is_success
    token = make_token("42")
    first = await _download(client, token, record_id)

    rebrand = acme_branding(company_name="Renamed Holdings", invoice_number_prefix="NEW-")
    assert (await client.put(branding_path("42"), json=rebrand, headers=admin)).is_success
    fake_stripe.invoices[invoice["id"]]["total"] = 1  # Stripe is not asked again either
    second = await _download(client, token, record_id)

    assert second.status_code == 200
    assert second.content == first.content
    assert "Acme White Label Ltd" in pdf_text(second.content)
    assert len(fake_stripe.calls("GET", f"/v1/invoices/{invoice['id']}")) == 1
    stored = await session.scalar(select(InvoiceDocument))
    assert stored is not None
    assert (stored.invoice_number, stored.branding, stored.invoice_status) == (
        "WL-FAKE-0001",
        "customer",
        "paid",
    )
    assert stored.sha256 == hashlib.sha256(first.content).hexdigest()


async def test_a_matching_etag_is_304(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    _, record_id, _ = await _customer_with_invoice(session, fake_stripe, "42")
    token = make_token("42")
    first = await _download(client, token, record_id)

    again = await client.get(
        pdf_path(record_id), headers={**bearer(token), "If-None-Match": first.headers["etag"]}
    )

    assert again.status_code == 304 and again.content == b""


async def test_a_pdf_with_many_lines_spans_two_pages(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    _, record_id, invoice = await _customer_with_invoice(session, fake_stripe, "42", extra_lines=24)

    response = await _download(client, make_token("42"), record_id)

    assert response.status_code == 200, response.text
    pages = pdf_pages(response.content)
    assert len(pages) == 2
    assert "Support session 01" in pages[0]
    assert "Support session 24" in pages[1]
    # The growth invoice's $157.79 and 24 more lines of $1.00.
    assert "Total $181.79" in pages[1]
    # 27 lines: the invoice embeds 10, the rest come from its lines endpoint.
    assert fake_stripe.calls("GET", f"/v1/invoices/{invoice['id']}/lines")


async def test_another_customers_invoice_is_404(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    _, their_record, _ = await _customer_with_invoice(session, fake_stripe, "43")

    mine = await _download(client, make_token("42"), their_record)
    unknown = await _download(client, make_token("42"), their_record + 1000)

    assert [mine.status_code, unknown.status_code] == [404, 404]
    assert mine.json()["error"]["code"] == "billing_record_not_found"
    assert fake_stripe.calls("GET", "/v1/invoices/") == []


@pytest.mark.parametrize("status", ["draft", "void"])
async def test_a_draft_or_void_invoice_has_no_pdf(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    status: str,
) -> None:
    _, record_id, _ = await _customer_with_invoice(session, fake_stripe, "42", status=status)

    response = await _download(client, make_token("42"), record_id)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invoice_not_final"
    assert response.json()["error"]["details"] == {"status": status}
    assert await session.scalar(select(func.count()).select_from(InvoiceDocument)) == 0


async def test_a_refund_entry_is_not_an_invoice(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    customer, _, invoice = await _customer_with_invoice(session, fake_stripe, "42")
    refund = await add_invoice_entry(
        session, customer, invoice, type="refund", status="refunded", stripe_refund_id="re_1"
    )

    response = await _download(client, make_token("42"), refund.id)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_an_invoice"


async def test_a_pdf_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get(pdf_path(1))

    assert response.status_code == 401


# --- branding ----------------------------------------------------------------------------


async def test_an_admin_sets_and_reads_a_customers_branding(
    client: httpx.AsyncClient, session: AsyncSession, admin: dict[str, str]
) -> None:
    await create_customer(session, dashboard_user_id="42")
    svg = svg_logo()

    before = await client.get(branding_path("42"), headers=admin)
    put = await client.put(
        branding_path("42"),
        json=acme_branding(primary_color="#ABC", logo=logo_upload(svg, "image/svg+xml")),
        headers=admin,
    )
    after = await client.get(branding_path("42").rstrip("/"), headers=admin)

    assert before.status_code == 200 and before.json() == {"success": True, "branding": None}
    assert put.status_code == 200, put.text
    branding = after.json()["branding"]
    assert branding == put.json()["branding"]
    assert branding["customer_id"] == "42"
    assert branding["company_name"] == "Acme White Label Ltd"
    assert branding["address_lines"] == ["1 Main Street", "Springfield, IL 62701"]
    assert branding["primary_color"] == "#aabbcc"
    assert branding["invoice_number_prefix"] == "WL-"
    assert branding["logo"]["media_type"] == "image/svg+xml"
    assert base64.b64decode(branding["logo"]["data"]) == svg
    assert branding["logo"]["sha256"] == hashlib.sha256(svg).hexdigest()


async def test_removing_a_branding_brings_back_the_services_own_for_new_pdfs_only(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    admin: dict[str, str],
) -> None:
    customer, first, _ = await _customer_with_invoice(session, fake_stripe, "42", number="F-1")
    later_invoice = growth_invoice(fake_stripe, customer.stripe_customer_id or "", number="F-2")
    later = await add_invoice_entry(session, customer, later_invoice)
    assert (await client.put(branding_path("42"), json=acme_branding(), headers=admin)).is_success
    token = make_token("42")
    branded = (await _download(client, token, first)).content

    removed = await client.delete(branding_path("42"), headers=admin)
    removed_again = await client.delete(branding_path("42"), headers=admin)
    shown = await client.get(branding_path("42"), headers=admin)

    assert (removed.status_code, removed.json()["branding"]) == (200, None)
    assert removed_again.status_code == 200
    assert shown.json()["branding"] is None
    assert (await _download(client, token, first)).content == branded
    new_text = pdf_text((await _download(client, token, later.id)).content)
    assert "Call Center Billing" in new_text and "Acme White Label Ltd" not in new_text


async def test_a_logo_of_512_kb_fits_in_the_request(
    client: httpx.AsyncClient, session: AsyncSession, admin: dict[str, str]
) -> None:
    await create_customer(session, dashboard_user_id="42")
    largest = noise_png(417)

    response = await client.put(
        branding_path("42"), json=acme_branding(logo=logo_upload(largest)), headers=admin
    )

    assert response.status_code == 200, response.text
    assert response.json()["branding"]["logo"]["size_bytes"] == len(largest)


@pytest.mark.parametrize(
    ("logo", "reason"),
    [
        (logo_upload(b"GIF89a", "image/gif"), "must be a PNG"),
        (logo_upload(noise_png(430)), "at most 524288"),
        (logo_upload(png_logo()[:150]), "broken"),
        (logo_upload(svg_logo("<script>alert(1)</script>"), "image/svg+xml"), "<script>"),
        (
            logo_upload(svg_logo('<image href="https://evil.test/a.png"/>'), "image/svg+xml"),
            "links to",
        ),
        ({"media_type": "image/png", "data": "not base64!"}, "not valid base64"),
    ],
)
async def test_an_invalid_logo_is_422_with_the_reason(
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: dict[str, str],
    logo: dict[str, str],
    reason: str,
) -> None:
    await create_customer(session, dashboard_user_id="42")

    response = await client.put(branding_path("42"), json=acme_branding(logo=logo), headers=admin)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_logo"
    assert reason in error["message"]
    assert error["details"] == {"field": "logo"}


@pytest.mark.parametrize("colour", ["red", "#12345", "#GGGGGG", "1f4e79"])
async def test_a_colour_that_is_not_hex_is_422(
    client: httpx.AsyncClient, session: AsyncSession, admin: dict[str, str], colour: str
) -> None:
    await create_customer(session, dashboard_user_id="42")

    response = await client.put(
        branding_path("42"), json=acme_branding(primary_color=colour), headers=admin
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "body.primary_color"
    assert "not a hex colour" in error["details"][0]["message"]


async def test_branding_is_for_billing_admins_only(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    await create_customer(session, dashboard_user_id="42")
    customer = bearer(make_token("42"))
    service = bearer(make_token("9003", roles=["service"]))

    responses = [
        await client.get(branding_path("42"), headers=customer),
        await client.put(branding_path("42"), json=acme_branding(), headers=customer),
        await client.put(branding_path("42"), json=acme_branding(), headers=service),
        await client.get(branding_path("42")),
        await client.put(branding_path("42"), json=acme_branding()),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403, 401, 401]


async def test_branding_of_an_unknown_customer_is_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    get = await client.get(branding_path("nobody"), headers=admin)
    put = await client.put(branding_path("nobody"), json=acme_branding(), headers=admin)

    assert [get.status_code, put.status_code] == [404, 404]
    assert put.json()["error"]["code"] == "customer_not_found"


async def test_archived_invoices_stay_downloadable(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    customer, downloaded_before, _ = await _customer_with_invoice(
        session, fake_stripe, "42", number="FAKE-0001"
    )
    never_downloaded = growth_invoice(
        fake_stripe, customer.stripe_customer_id or "", number="FAKE-0002"
    )
    second = await add_invoice_entry(session, customer, never_downloaded)
    token = make_token("42")
    first_bytes = (await _download(client, token, downloaded_before)).content
    # Three years on, both entries are settled and old enough to be archived.
    clock.advance(timedelta(days=3 * 365))

    run = await archive_billing_records(app.state.sessionmaker, clock=clock, older_than_days=730)

    assert run.moved == 2
    token = make_token("42")  # a fresh token, three years on
    listed = await client.get(
        f"{API}/billing-history/", params={"include_archived": "true"}, headers=bearer(token)
    )
    assert listed.status_code == 200, listed.text
    listed_rows = listed.json()["billing_history"]
    assert sorted((row["id"], row["archived"]) for row in listed_rows) == sorted(
        [(downloaded_before, True), (second.id, True)]
    )
    again = await _download(client, token, downloaded_before)
    rendered_now = await _download(client, token, second.id)
    assert (again.status_code, again.content) == (200, first_bytes)
    assert rendered_now.status_code == 200, rendered_now.text
    assert "FAKE-0002" in pdf_text(rendered_now.content)


async def test_an_entry_linked_to_another_customers_invoice_renders_nothing(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    mine = await create_customer(
        session,
        dashboard_user_id="42",
        stripe_customer_id=fake_stripe.add_customer(email="a@example.com")["id"],
    )
    someone_else = fake_stripe.add_customer(email="b@example.com")
    theirs = growth_invoice(fake_stripe, someone_else["id"], number="FAKE-0002")
    # A wrong link: an entry of customer 42 naming another Stripe customer's invoice.
    wrong = await add_invoice_entry(session, mine, theirs)

    response = await _download(client, make_token("42"), wrong.id)

    assert (response.status_code, response.json()["error"]["code"]) == (
        404,
        "billing_record_not_found",
    )
    stored = await session.scalar(select(func.count()).select_from(InvoiceDocument))
    assert stored == 0
