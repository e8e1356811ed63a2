"""Invoice PDFs typeset by Typst from `templates/invoice.typ`.

The template receives one JSON document through `sys.inputs` (Typst parses it with `json`),
and the logo as a file in an empty, private project root: data is never spliced into Typst
markup, so nothing a customer or an admin typed can change what the template does, and the
template can read nothing but the logo.

Only Typst's embedded fonts are used (system fonts are ignored) and the document carries no
creation date, so the same input gives the same bytes on every machine.

Typst works on the CPU for a few milliseconds a page: the async entry point runs it in a
worker thread so the event loop keeps serving other requests.
"""

import json
import tempfile
from functools import cache, partial
from pathlib import Path
from typing import Any

import anyio.to_thread
import typst

from app.invoices.branding_validation import ValidatedLogo

TEMPLATE_PATH = Path(__file__).with_name("templates") / "invoice.typ"
# Recorded with each stored document; change it with the template.
TEMPLATE_VERSION = "invoice-2026-11-25"


class InvoiceRenderingFailed(Exception):
    """Typst refused the template or its data: a bug of ours (the message says where)."""


class LogoNotRenderable(Exception):
    """Typst cannot draw this logo."""


@cache
def _template() -> bytes:
    return TEMPLATE_PATH.read_bytes()


def _compile(source: bytes, root: Path, inputs: dict[str, str]) -> bytes:
    compiler = typst.Compiler(
        input=source, root=str(root), ignore_system_fonts=True, sys_inputs=inputs
    )
    pdf = compiler.compile(format="pdf")
    assert isinstance(pdf, bytes)
    return pdf


def render_invoice_pdf(content: dict[str, Any], logo: ValidatedLogo | None) -> bytes:
    """The PDF of an invoice described by `content` (see `presentation.invoice_content`)."""
    with tempfile.TemporaryDirectory(prefix="invoice-") as directory:
        root = Path(directory)
        brand = dict(content["brand"])
        brand["logo"] = None
        if logo is not None:
            name = f"logo.{logo.file_extension}"
            (root / name).write_bytes(logo.data)
            brand["logo"] = f"/{name}"
        inputs = {"invoice": json.dumps({**content, "brand": brand}, ensure_ascii=False)}
        try:
            return _compile(_template(), root, inputs)
        except typst.TypstError as error:
            raise InvoiceRenderingFailed(f"{error.message} {error.diagnostic}") from error


async def render_invoice_pdf_in_thread(
    content: dict[str, Any], logo: ValidatedLogo | None
) -> bytes:
    return await anyio.to_thread.run_sync(partial(render_invoice_pdf, content, logo))


def check_logo_renders(logo: ValidatedLogo) -> None:
    """Draw the logo alone, as the invoice would; raises LogoNotRenderable if Typst cannot."""
    with tempfile.TemporaryDirectory(prefix="logo-") as directory:
        root = Path(directory)
        name = f"logo.{logo.file_extension}"
        (root / name).write_bytes(logo.data)
        source = f'#box(height: 16mm, width: 55mm, image("/{name}", fit: "contain"))'.encode()
        try:
            _compile(source, root, {})
        except typst.TypstError as error:
            raise LogoNotRenderable(error.message) from None
