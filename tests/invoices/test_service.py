import asyncio
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.invoices import rendering, service
from app.invoices.branding import default_branding
from app.invoices.errors import InvoiceNotFinal, NotYetInvoiced, StoredDocumentCorrupt
from app.models import Customer, InvoiceDocument, Subscription
from app.stripe_gateway.client import StripeGateway
from tests.factories import create_overage_charge, create_subscribed_customer
from tests.invoices.helpers import add_invoice_entry, growth_invoice, pdf_text
from tests.stripe.fake import FakeStripe


@pytest.fixture
def download(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: FrozenClock
) -> Any:
    async def run(customer: Customer, record_id: int) -> service.InvoicePdf:
        return await service.get_invoice_pdf(
            sessionmaker=sessionmaker,
            gateway=StripeGateway(settings),
            clock=clock,
            default_branding=default_branding(settings),
            locale="en_US",
            customer=customer,
            record_id=record_id,
        )

    return run


async def _subscribed(
    session: AsyncSession, fake: FakeStripe
) -> tuple[Customer, str, Subscription]:
    customer, subscription = await create_subscribed_customer(session)
    stripe_customer = fake.add_customer(email="ada@example.com")
    customer.stripe_customer_id = stripe_customer["id"]
    await session.commit()
    return customer, str(stripe_customer["id"]), subscription


async def test_two_first_downloads_at_once_store_one_pdf_and_both_get_it(
    session: AsyncSession,
    fake_stripe: FakeStripe,
    download: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer, stripe_customer_id, _ = await _subscribed(session, fake_stripe)
    entry = await add_invoice_entry(
        session, customer, growth_invoice(fake_stripe, stripe_customer_id)
    )
    # Each render tells itself apart, so the test sees whose bytes were kept.
    renders: list[bytes] = []
    real_render = rendering.render_invoice_pdf

    def numbered_render(content: dict[str, Any], logo: Any) -> bytes:
        pdf = real_render(content, logo) + f"\n%render {len(renders)}\n".encode()
        renders.append(pdf)
        return pdf

    monkeypatch.setattr(rendering, "render_invoice_pdf", numbered_render)

    first, second = await asyncio.gather(download(customer, entry.id), download(customer, entry.id))

    assert len(renders) == 2 and renders[0] != renders[1]
    stored = (await session.scalars(select(InvoiceDocument))).all()
    assert len(stored) == 1
    assert first.content == second.content == stored[0].pdf
    assert stored[0].pdf in renders
    assert first.sha256 == hashlib.sha256(stored[0].pdf).hexdigest()


async def test_an_overage_entry_is_the_invoice_it_was_billed_on(
    session: AsyncSession, fake_stripe: FakeStripe, download: Any
) -> None:
    customer, stripe_customer_id, subscription = await _subscribed(session, fake_stripe)
    invoice = growth_invoice(fake_stripe, stripe_customer_id)
    invoice_entry = await add_invoice_entry(session, customer, invoice)
    # The charge the invoice's overage line (charge 7, minutes) was billed from.
    await create_overage_charge(
        session,
        subscription,
        id=7,
        period_start=datetime(2026, 10, 1, tzinfo=UTC),
        period_end=datetime(2026, 11, 1, tzinfo=UTC),
        minutes_over=Decimal("333.0000"),
        minutes_amount=833,
        status="invoiced",
        stripe_invoice_id=invoice["id"],
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        rate_per_minute=Decimal("2.5"),
        rate_per_agent=Decimal("1500"),
    )
    # Billed while the invoice was a draft: its own status stays "draft".
    overage_entry = await add_invoice_entry(
        session, customer, invoice, type="overage", status="draft", amount=833, overage_charge_id=7
    )

    from_overage = await download(customer, overage_entry.id)
    from_invoice = await download(customer, invoice_entry.id)

    assert from_overage.content == from_invoice.content
    text = pdf_text(from_overage.content)
    assert "333 min $0.025 / minute $8.33" in text
    assert "Overage" in text and "Add-on" not in text  # no add-on prices in the catalog
    assert await session.scalar(select(func.count()).select_from(InvoiceDocument)) == 1


async def test_an_overage_waiting_for_the_next_invoice_has_no_pdf_yet(
    session: AsyncSession, fake_stripe: FakeStripe, download: Any
) -> None:
    customer, stripe_customer_id, _ = await _subscribed(session, fake_stripe)
    invoice = growth_invoice(fake_stripe, stripe_customer_id)
    entry = await add_invoice_entry(
        session, customer, invoice, type="overage", status="pending", stripe_invoice_id=None
    )

    with pytest.raises(NotYetInvoiced):
        await download(customer, entry.id)


async def test_stripe_decides_when_the_entry_lags_behind_a_void(
    session: AsyncSession, fake_stripe: FakeStripe, download: Any
) -> None:
    customer, stripe_customer_id, _ = await _subscribed(session, fake_stripe)
    invoice = growth_invoice(fake_stripe, stripe_customer_id, status="open")
    entry = await add_invoice_entry(session, customer, invoice)
    invoice["status"] = "void"  # voided on Stripe; the webhook has not arrived

    with pytest.raises(InvoiceNotFinal) as refused:
        await download(customer, entry.id)

    assert refused.value.details == {"status": "void"}
    assert await session.scalar(select(func.count()).select_from(InvoiceDocument)) == 0


async def test_a_stored_pdf_that_fails_its_checksum_is_never_served(
    session: AsyncSession, fake_stripe: FakeStripe, download: Any
) -> None:
    customer, stripe_customer_id, _ = await _subscribed(session, fake_stripe)
    entry = await add_invoice_entry(
        session, customer, growth_invoice(fake_stripe, stripe_customer_id)
    )
    pdf = (await download(customer, entry.id)).content
    await session.execute(update(InvoiceDocument).values(pdf=pdf[:-1] + b"!", size_bytes=len(pdf)))
    await session.commit()

    with pytest.raises(StoredDocumentCorrupt):
        await download(customer, entry.id)
