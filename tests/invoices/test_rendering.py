"""The template and its data: what the PDF says, that untrusted text stays text, and the
checks a logo must pass before it goes into a PDF."""

import base64
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.core.branding_values import BrandingValueError, normalize_hex_color
from app.invoices.branding import SellerBranding
from app.invoices.branding_validation import MAX_LOGO_BYTES, validate_logo
from app.invoices.presentation import (
    CustomerFallback,
    LineLookups,
    OverageLineTerms,
    invoice_content,
)
from app.invoices.rendering import render_invoice_pdf
from app.stripe_gateway.types import (
    InvoiceDetails,
    InvoiceDiscountAmount,
    InvoiceLineDetails,
    InvoiceTaxAmount,
    PostalAddress,
)
from tests.invoices.helpers import noise_png, pdf_pages, pdf_text, png_logo, svg_logo

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
AS_OF = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _line(amount: int, description: str, **overrides: object) -> InvoiceLineDetails:
    values: dict[str, object] = {
        "id": f"il_{description}",
        "description": description,
        "amount": amount,
        "quantity": 1,
        "unit_amount": Decimal(amount),
        "price_id": None,
        "proration": False,
        "period_start": NOV_1,
        "period_end": DEC_1,
        **overrides,
    }
    return InvoiceLineDetails(**values)  # type: ignore[arg-type]


def _invoice(lines: list[InvoiceLineDetails], **overrides: object) -> InvoiceDetails:
    subtotal = sum(line.amount for line in lines)
    values: dict[str, object] = {
        "id": "in_1",
        "number": "ACME-0001",
        "status": "paid",
        "currency": "usd",
        "customer_id": "cus_1",
        "customer_name": "Globex Corporation",
        "customer_email": "ap@globex.test",
        "customer_address": PostalAddress("5 Elm Street", None, "Springfield", "IL", "62701", "US"),
        "customer_tax_ids": (("eu_vat", "DE123456789"),),
        "account_tax_ids": (),
        "created": NOV_1,
        "finalized_at": NOV_1,
        "paid_at": NOV_1,
        "due_date": None,
        "period_start": NOV_1,
        "period_end": NOV_1,
        "subtotal": subtotal,
        "total": subtotal,
        "amount_paid": subtotal,
        "amount_due": subtotal,
        "amount_remaining": 0,
        "starting_balance": 0,
        "discounts": (),
        "taxes": (),
        "lines": tuple(lines),
        **overrides,
    }
    return InvoiceDetails(**values)  # type: ignore[arg-type]


def _branding(**overrides: object) -> SellerBranding:
    values: dict[str, object] = {
        "source": "customer",
        "company_name": "Acme White Label Ltd",
        "address_lines": ("1 Main Street", "Springfield, IL 62701"),
        "tax_id": "US 12-3456789",
        "primary_color": "#c0392b",
        "footer_text": "Acme Ltd, registered in Springfield",
        "number_prefix": "WL-",
        "logo": None,
        **overrides,
    }
    return SellerBranding(**values)  # type: ignore[arg-type]


NO_LOOKUPS = LineLookups(add_on_price_ids=frozenset(), overage_terms={})


def _render(
    invoice: InvoiceDetails,
    branding: SellerBranding | None = None,
    lookups: LineLookups = NO_LOOKUPS,
    locale: str = "en_US",
) -> bytes:
    branding = branding or _branding()
    content = invoice_content(
        invoice,
        branding,
        customer=CustomerFallback(name=None, email=None),
        lookups=lookups,
        locale=locale,
        as_of=AS_OF,
    )
    return render_invoice_pdf(content, branding.logo)


def test_the_pdf_shows_seller_customer_lines_discounts_taxes_and_totals() -> None:
    invoice = _invoice(
        [
            _line(
                9_900, "1 \N{MULTIPLICATION SIGN} Growth (at $99.00 / month)", price_id="price_plan"
            ),
            _line(
                4_000,
                "2 \N{MULTIPLICATION SIGN} Extra agents",
                quantity=2,
                unit_amount=Decimal(2_000),
                price_id="price_addon",
            ),
            _line(
                -2_500,
                "Unused time on Pro after 15 Nov 2026",
                price_id="price_plan",
                proration=True,
                unit_amount=Decimal(5_000),
            ),
            _line(
                833,
                "Overage: 333 call minutes",
                price_id=None,
                unit_amount=Decimal(833),
                metadata={
                    "billing_type": "overage",
                    "overage_charge_id": "7",
                    "overage_line": "minutes",
                },
            ),
        ],
        subtotal=12_233,
        discounts=(InvoiceDiscountAmount(1_223, "Launch", Decimal("10")),),
        taxes=(
            InvoiceTaxAmount(2_092, 11_010, False, "VAT", Decimal("19"), "DE", "standard_rated"),
        ),
        total=13_102,
        amount_paid=13_102,
        amount_due=13_102,
    )
    lookups = LineLookups(
        add_on_price_ids=frozenset({"price_addon"}),
        overage_terms={(7, "minutes"): OverageLineTerms(Decimal("333.0000"), Decimal("2.5"))},
    )

    text = pdf_text(_render(invoice, lookups=lookups))

    for expected in (
        "Acme White Label Ltd",
        "1 Main Street",
        "Tax ID: US 12-3456789",
        "WL-ACME-0001",
        "Paid",
        "Paid on Nov 1, 2026",
        "Globex Corporation",
        "5 Elm Street",
        "Springfield, IL 62701",
        "VAT DE123456789",
        "Nov 1, 2026 \N{EN DASH} Dec 1, 2026",
        "Plan",
        "Add-on",
        "Proration",
        "Overage",
        "2 $20.00 $40.00",
        "-$25.00",
        "333 min $0.025 / minute $8.33",
        "Subtotal $122.33",
        "Discount (Launch, 10% off) -$12.23",
        "VAT 19% (DE) on $110.10 $20.92",
        "Total $131.02",
        "Amount paid $131.02",
        "Amount due $0.00",
        "Payment status as of Nov 25, 2026.",
        "All amounts in USD.",
        "Acme Ltd, registered in Springfield",
    ):
        assert expected in text, expected


def test_amounts_follow_the_currency_and_the_locale() -> None:
    yen = _invoice([_line(1_234_567, "Plan", unit_amount=Decimal(1_234_567))], currency="jpy")
    euro = _invoice([_line(123_450, "Plan", unit_amount=Decimal(123_450))], currency="eur")

    assert "Total ¥1,234,567" in pdf_text(_render(yen))
    # Babel writes the de_DE amount with a no-break space before the sign.
    assert "Total 1.234,50\xa0€" in pdf_text(_render(euro, locale="de_DE"))


def test_text_that_looks_like_typst_markup_is_printed_as_written() -> None:
    hostile = '#import "/etc/passwd": * ] [ #set page(fill: red) $x^2$ <l> @ref \\ `raw`'
    branding = _branding(company_name=hostile, footer_text="*bold* _em_ #pagebreak()")
    invoice = _invoice([_line(100, "] #panic() [")], customer_name='#eval("1+1")')

    pdf = _render(invoice, branding)
    text = pdf_text(pdf)

    assert hostile in text
    assert "*bold* _em_ #pagebreak()" in text
    assert "] #panic() [" in text
    assert '#eval("1+1")' in text
    assert len(pdf_pages(pdf)) == 1


def test_many_lines_continue_on_a_second_page_under_the_column_titles() -> None:
    lines = [_line(100, f"Support session {index:02d}") for index in range(1, 31)]

    pages = pdf_pages(_render(_invoice(lines)))

    assert len(pages) == 2
    assert "Support session 01" in pages[0] and "Support session 30" not in pages[0]
    assert "Support session 30" in pages[1]
    # The table's header repeats, and the page says whose invoice it belongs to.
    assert "Description Quantity Unit price Amount" in pages[1]
    assert "Acme White Label Ltd Invoice WL-ACME-0001" in pages[1]
    assert "Page 1 / 2" in pages[0] and "Page 2 / 2" in pages[1]
    assert "Total $30.00" in pages[1] and "Total" not in pages[0]


def test_the_same_invoice_renders_to_the_same_bytes() -> None:
    invoice = _invoice([_line(9_900, "Plan")])

    assert _render(invoice) == _render(invoice)


@pytest.mark.parametrize(
    ("logo", "media_type"), [(png_logo(), "image/png"), (svg_logo(), "image/svg+xml")]
)
def test_a_logo_goes_into_the_pdf(logo: bytes, media_type: str) -> None:
    invoice = _invoice([_line(100, "Plan")])
    without = _render(invoice, _branding())

    with_logo = _render(invoice, _branding(logo=validate_logo(logo, media_type)))

    assert len(with_logo) > len(without)
    if media_type == "image/png":
        assert b"/Subtype/Image" in with_logo.replace(b" ", b"")


# --- logo and colour checks -------------------------------------------------------------

SCRIPT_SVG = svg_logo('<script>alert(1)</script><rect width="1" height="1"/>')
ONLOAD_SVG = svg_logo('<rect width="1" height="1" onload="alert(1)"/>')
EXTERNAL_HREF_SVG = svg_logo('<image href="https://evil.test/track.png" width="1" height="1"/>')
LOCAL_FILE_SVG = svg_logo('<image xlink:href="/etc/hostname" width="1" height="1"/>')
JAVASCRIPT_LINK_SVG = svg_logo('<use href="javascript:alert(1)"/>')
FOREIGN_OBJECT_SVG = svg_logo("<foreignObject><div>hi</div></foreignObject>")
EXTERNAL_URL_SVG = svg_logo('<rect width="1" height="1" fill="url(https://evil.test/#g)"/>')
STYLE_IMPORT_SVG = svg_logo('<style>@import url("https://evil.test/x.css");</style>')
ENTITY_SVG = svg_logo(
    "<text>&xxe;</text>",
    head='<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
)


@pytest.mark.parametrize(
    ("data", "media_type", "reason"),
    [
        (b"GIF89a....", "image/gif", "must be a PNG"),
        (png_logo(), "image/jpeg", "must be a PNG"),
        (b"", "image/png", "empty"),
        (noise_png(430), "image/png", "at most 524288"),
        (png_logo()[:200], "image/png", "broken"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", "broken"),
        (svg_logo(), "image/png", "not a PNG"),
        (png_logo(5000, 1), "image/png", "at most 4096"),
        (SCRIPT_SVG, "image/svg+xml", "<script>"),
        (ONLOAD_SVG, "image/svg+xml", "event handler"),
        (EXTERNAL_HREF_SVG, "image/svg+xml", "links to 'https://evil.test/track.png'"),
        (LOCAL_FILE_SVG, "image/svg+xml", "links to '/etc/hostname'"),
        (JAVASCRIPT_LINK_SVG, "image/svg+xml", "links to 'javascript:"),
        (FOREIGN_OBJECT_SVG, "image/svg+xml", "<foreignobject>"),
        (EXTERNAL_URL_SVG, "image/svg+xml", "external resource"),
        (STYLE_IMPORT_SVG, "image/svg+xml", "external resource"),
        (ENTITY_SVG, "image/svg+xml", "DTD or entities"),
        (
            b'<?xml version="1.0"?><?xml-stylesheet href="https://evil.test/x.css"?>' + svg_logo(),
            "image/svg+xml",
            "processing instruction",
        ),
        (svg_logo('<rect style="fill:\\75rl(https://evil.test/x)"/>'), "image/svg+xml", "external"),
        (
            svg_logo('<style>@\\69mport "https://evil.test/x.css";</style>'),
            "image/svg+xml",
            "external",
        ),
        (
            svg_logo("<style>rect{fill:image-set('https://evil.test/x.png')}</style>"),
            "image/svg+xml",
            "external",
        ),
        (
            svg_logo(
                '<image width="4" height="4"/><set attributeName="href" to="https://evil.test/x.png"/>'
            ),
            "image/svg+xml",
            "<set>",
        ),
        (
            svg_logo('<animate attributeName="href" values="javascript:alert(1)"/>'),
            "image/svg+xml",
            "<animate>",
        ),
        (svg_logo('<a href="#r"><rect width="5" height="5"/></a>'), "image/svg+xml", "<a>"),
        (b"<svg><rect/>", "image/svg+xml", "not well-formed"),
        (b"<html xmlns='http://www.w3.org/1999/xhtml'/>", "image/svg+xml", "not an SVG"),
        (b"\xff\xfe<svg/>", "image/svg+xml", "not UTF-8"),
    ],
)
def test_a_bad_logo_is_refused_with_the_reason(data: bytes, media_type: str, reason: str) -> None:
    with pytest.raises(BrandingValueError) as refused:
        validate_logo(data, media_type)

    assert reason in str(refused.value)


def test_a_logo_of_512_kb_passes_and_one_byte_more_does_not() -> None:
    largest = noise_png(417)
    assert len(largest) <= MAX_LOGO_BYTES < len(largest) + 4_096

    logo = validate_logo(largest, "image/png")

    assert logo.data == largest and len(logo.sha256) == 64
    with pytest.raises(BrandingValueError, match="at most 524288"):
        validate_logo(b"\x89PNG\r\n\x1a\n" + bytes(MAX_LOGO_BYTES - 7), "image/png")


def test_an_svg_may_refer_to_its_own_parts_and_to_inline_images() -> None:
    inline = base64.b64encode(png_logo(4, 4)).decode()
    svg = svg_logo(
        '<defs><linearGradient id="g"><stop offset="0" stop-color="#c00"/></linearGradient>'
        '<rect id="r" width="10" height="10"/></defs>'
        '<rect width="120" height="40" fill="url(#g)"/><use href="#r"/>'
        f'<image xlink:href="data:image/png;base64,{inline}" width="4" height="4"/>'
    )

    assert validate_logo(svg, "image/svg+xml").media_type == "image/svg+xml"


@pytest.mark.parametrize(
    ("value", "expected"), [("#1F4E79", "#1f4e79"), ("#abc", "#aabbcc"), (" #00ff00 ", "#00ff00")]
)
def test_colours_are_hex_and_stored_lower_case(value: str, expected: str) -> None:
    assert normalize_hex_color(value) == expected


@pytest.mark.parametrize("value", ["red", "#12345", "#1234567", "rgb(1,2,3)", "#ggg", ""])
def test_anything_but_a_hex_colour_is_refused(value: str) -> None:
    with pytest.raises(BrandingValueError, match="not a hex colour"):
        normalize_hex_color(value)
