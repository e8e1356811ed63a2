"""Invoices on the fake Stripe, their billing-history entries, logos and PDF text."""

import io
import random
from datetime import UTC, datetime
from typing import Any

from PIL import Image
from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import BillingHistory, Customer
from tests.factories import create_billing_row
from tests.stripe.fake import FakeStripe

PERIOD = (
    int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()),
    int(datetime(2026, 12, 1, tzinfo=UTC).timestamp()),
)
PLAN_PRICE = "price_growth_monthly"
ADD_ON_PRICE = "price_extra_agents_monthly"


def png_logo(
    width: int = 240, height: int = 80, color: tuple[int, int, int] = (190, 40, 40)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    noise = random.Random(side).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), noise).save(buffer, "PNG")
    return buffer.getvalue()


def svg_logo(body: str = '<rect width="120" height="40" fill="#c0392b"/>', head: str = "") -> bytes:
    return (
        f'{head}<svg xmlns="http://www.w3.org/2000/svg" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" width="120" height="40" '
        f'viewBox="0 0 120 40">{body}</svg>'
    ).encode()


def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def pdf_pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def growth_invoice(
    fake: FakeStripe,
    stripe_customer_id: str,
    *,
    status: str = "paid",
    number: str = "FAKE-0001",
    extra_lines: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    """A renewal: the plan, two add-on seats and an overage line (charge 7, minutes), with a
    10% coupon and 19% VAT. Subtotal $147.33, discount -$14.73, VAT $25.19, total $157.79."""
    lines = [
        fake.new_line(
            9_900,
            description="1 \N{MULTIPLICATION SIGN} Growth (at $99.00 / month)",
            price=PLAN_PRICE,
            period=PERIOD,
        ),
        fake.new_line(
            4_000,
            description="2 \N{MULTIPLICATION SIGN} Extra agents (at $20.00 / month)",
            quantity=2,
            unit_amount_decimal="2000",
            price=ADD_ON_PRICE,
            period=PERIOD,
        ),
        fake.new_line(
            833,
            description="Overage: 333 call minutes, 2026-10-01 to 2026-11-01",
            metadata={
                "billing_type": "overage",
                "overage_charge_id": "7",
                "overage_line": "minutes",
            },
        ),
        *(
            fake.new_line(100, description=f"Support session {index + 1:02d}", period=PERIOD)
            for index in range(extra_lines)
        ),
    ]
    extra = 100 * extra_lines
    discount = fake.add_coupon_discount(customer=stripe_customer_id, name="Launch", percent_off=10)
    vat = fake.add_tax_rate(display_name="VAT", percentage=19.0, jurisdiction="DE")
    return fake.add_invoice(
        customer=stripe_customer_id,
        lines=lines,
        status=status,
        number=number,
        discounts=[(discount, 1_473)],
        taxes=[(vat, 2_519, 13_260 + extra)],
        **fields,
    )


async def add_invoice_entry(
    session: AsyncSession, customer: Customer, invoice: dict[str, Any], **overrides: Any
) -> BillingHistory:
    """The billing-history row of a fake Stripe invoice, with its amounts, number and date."""
    values: dict[str, Any] = {
        "status": invoice["status"],
        "amount": invoice["total"],
        "amount_paid": invoice["amount_paid"],
        "amount_due": invoice["amount_due"],
        "currency": invoice["currency"],
        "stripe_invoice_id": invoice["id"],
        "number": invoice["number"],
        "occurred_at": datetime.fromtimestamp(invoice["created"], UTC),
        **overrides,
    }
    return await create_billing_row(session, customer, **values)
