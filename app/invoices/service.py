"""Invoice PDFs and the branding they carry.

A PDF is served from the billing-history entry of an invoice:
- a refund entry has none (409 `not_an_invoice`); an overage entry is the invoice it was
  billed on, and has none while it waits for the next invoice (409 `not_yet_invoiced`);
- only a final invoice has one: Stripe's `open`, `paid` or `uncollectible`; a `draft` can
  still change and a `void` one is not owed (409 `invoice_not_final`);
- the first download renders it and stores it with its SHA-256; every later download
  returns the stored bytes (checked against the checksum), so a change of branding or
  template never alters an invoice already issued. A stored PDF shows the payment status as
  of its rendering (the billing history shows the current one).

The first download reads the entry (a short transaction), fetches the invoice from Stripe
with no transaction open, renders it in a worker thread, and stores it in a second short
transaction with ON CONFLICT DO NOTHING: two first downloads racing each other store one PDF
and both return it.
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

import anyio.to_thread
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import service as billing_history_service
from app.billing_history.records import BillingRecord
from app.core.branding_values import BrandingValueError
from app.core.clock import Clock
from app.customers import service as customers_service
from app.invoices import presentation, rendering, repository
from app.invoices.branding import SellerBranding, customer_branding
from app.invoices.branding_validation import ValidatedLogo, validate_logo
from app.invoices.errors import (
    BillingRecordNotFound,
    CustomerNotFound,
    InvalidLogo,
    InvoiceMissingOnStripe,
    InvoiceNotFinal,
    InvoiceRenderingError,
    NotAnInvoice,
    NotYetInvoiced,
    StoredDocumentCorrupt,
)
from app.invoices.schemas import BrandingUpdate
from app.models import Customer, CustomerBranding, InvoiceDocument
from app.plans import service as plans_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import InvoiceDetails
from app.usage import overage_billing

logger = structlog.get_logger(__name__)

FINAL_STATUSES = frozenset({"open", "paid", "uncollectible"})
_NOT_FINAL_STATUSES = frozenset({"draft", "void"})
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class InvoicePdf:
    content: bytes
    sha256: str
    invoice_number: str

    @property
    def filename(self) -> str:
        return f"invoice-{_FILENAME_UNSAFE.sub('_', self.invoice_number)}.pdf"


@dataclass(frozen=True, slots=True)
class _Request:
    stripe_invoice_id: str
    # The customer's Stripe id: the invoice must be theirs.
    stripe_customer_id: str | None
    branding: SellerBranding
    customer: presentation.CustomerFallback


async def get_invoice_pdf(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    default_branding: SellerBranding,
    locale: str,
    customer: Customer,
    record_id: int,
) -> InvoicePdf:
    """The PDF of the customer's billing-history entry `record_id` (see the module)."""
    async with sessionmaker() as session:
        entry = await billing_history_service.get_entry_for_customer(
            session, customer_id=customer.id, record_id=record_id
        )
        if entry is None:
            raise BillingRecordNotFound()
        stripe_invoice_id = _invoice_of(entry)
        stored = await repository.get_document(
            session, stripe_invoice_id=stripe_invoice_id, customer_id=customer.id
        )
        if stored is not None:
            return _served(stored)
        branding_row = await repository.get_branding(session, customer_id=customer.id)
    request = _Request(
        stripe_invoice_id=stripe_invoice_id,
        stripe_customer_id=customer.stripe_customer_id,
        branding=customer_branding(branding_row) if branding_row else default_branding,
        customer=presentation.CustomerFallback(name=customer.name, email=customer.email),
    )
    return await _render_and_store(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        locale=locale,
        customer_id=customer.id,
        request=request,
    )


def _invoice_of(entry: BillingRecord) -> str:
    """The Stripe invoice whose PDF the entry stands for; raises when it has none (yet)."""
    if entry.type == "refund":
        raise NotAnInvoice()
    if entry.stripe_invoice_id is None:
        raise NotYetInvoiced()
    # An invoice's own entry follows the invoice's status (webhooks keep it current); an
    # overage entry keeps the status it had when billed, so Stripe decides for it.
    if entry.type != "overage" and entry.status in _NOT_FINAL_STATUSES:
        raise InvoiceNotFinal(entry.status)
    return entry.stripe_invoice_id


async def _render_and_store(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    locale: str,
    customer_id: int,
    request: _Request,
) -> InvoicePdf:
    invoice = await gateway.retrieve_invoice_details(request.stripe_invoice_id)
    if invoice is None:
        raise InvoiceMissingOnStripe()
    if invoice.customer_id != request.stripe_customer_id:
        # Our row names an invoice that is not this customer's on Stripe (a wrong link):
        # nothing of another customer's is rendered, or stored under this one.
        logger.error(
            "invoice_owner_mismatch",
            invoice=invoice.id,
            customer_id=customer_id,
            invoice_customer=invoice.customer_id,
        )
        raise BillingRecordNotFound()
    if invoice.status not in FINAL_STATUSES:
        raise InvoiceNotFinal(invoice.status)
    async with sessionmaker() as session:
        lookups = await _line_lookups(session, invoice)
    now = clock.now()
    content = presentation.invoice_content(
        invoice,
        request.branding,
        customer=request.customer,
        lookups=lookups,
        locale=locale,
        as_of=now,
    )
    try:
        pdf = await rendering.render_invoice_pdf_in_thread(content, request.branding.logo)
    except rendering.InvoiceRenderingFailed as error:
        logger.error("invoice_rendering_failed", invoice=invoice.id, error=str(error))
        raise InvoiceRenderingError() from None
    async with sessionmaker.begin() as session:
        await repository.insert_document_if_absent(
            session,
            {
                "stripe_invoice_id": invoice.id,
                "customer_id": customer_id,
                "invoice_number": content["number"],
                "invoice_status": invoice.status,
                "branding": request.branding.source,
                "template_version": rendering.TEMPLATE_VERSION,
                "pdf": pdf,
                "sha256": hashlib.sha256(pdf).hexdigest(),
                "size_bytes": len(pdf),
                "rendered_at": now,
            },
        )
        stored = await repository.get_document(
            session, stripe_invoice_id=invoice.id, customer_id=customer_id
        )
    if stored is None:
        # The invoice's document was stored for another customer: their ids disagree with
        # Stripe's, which only an operator can sort out.
        logger.error("invoice_document_owner_mismatch", invoice=invoice.id, customer=customer_id)
        raise InvoiceMissingOnStripe()
    logger.info("invoice_document_stored", invoice=invoice.id, size=stored.size_bytes)
    return _served(stored)


async def _line_lookups(session: AsyncSession, invoice: InvoiceDetails) -> presentation.LineLookups:
    keys = [key for line in invoice.lines if (key := presentation.overage_line_key(line))]
    charges = await overage_billing.overage_charges_by_id(
        session, sorted({charge_id for charge_id, _ in keys})
    )
    terms: dict[tuple[int, str], presentation.OverageLineTerms] = {}
    for charge in charges:
        terms[(charge.id, "minutes")] = presentation.OverageLineTerms(
            charge.minutes_over, charge.rate_per_minute
        )
        terms[(charge.id, "agents")] = presentation.OverageLineTerms(
            Decimal(charge.agents_over), charge.rate_per_agent
        )
    return presentation.LineLookups(
        add_on_price_ids=frozenset(await plans_service.add_on_price_ids(session)),
        overage_terms=terms,
    )


def _served(document: InvoiceDocument) -> InvoicePdf:
    if hashlib.sha256(document.pdf).hexdigest() != document.sha256:
        logger.error("invoice_document_checksum_mismatch", invoice=document.stripe_invoice_id)
        raise StoredDocumentCorrupt()
    return InvoicePdf(
        content=document.pdf, sha256=document.sha256, invoice_number=document.invoice_number
    )


# --- branding ----------------------------------------------------------------------------


async def get_customer_branding(
    session: AsyncSession, *, dashboard_user_id: str
) -> CustomerBranding | None:
    """The customer's branding; None when the customer has none (default branding)."""
    customer = await _customer(session, dashboard_user_id)
    return await repository.get_branding(session, customer_id=customer.id)


async def remove_customer_branding(session: AsyncSession, *, dashboard_user_id: str) -> None:
    """Back to the service's own branding for PDFs rendered from now on (stored PDFs keep
    theirs). Removing what is not there is not an error."""
    customer = await _customer(session, dashboard_user_id)
    await repository.delete_branding(session, customer_id=customer.id)


async def set_customer_branding(
    session: AsyncSession, *, dashboard_user_id: str, update: BrandingUpdate
) -> CustomerBranding:
    """Replace the customer's branding; the logo is decoded and checked first (422
    `invalid_logo` with the reason). PDFs already stored keep the branding they have."""
    logo = await _checked_logo(update) if update.logo is not None else None
    customer = await _customer(session, dashboard_user_id)
    return await repository.upsert_branding(
        session,
        {
            "customer_id": customer.id,
            "company_name": update.company_name,
            "address": "\n".join(update.address_lines) or None,
            "tax_id": update.tax_id,
            "primary_color": update.primary_color,
            "footer_text": update.footer_text,
            "invoice_number_prefix": update.invoice_number_prefix,
            "logo": logo.data if logo else None,
            "logo_media_type": logo.media_type if logo else None,
            "logo_sha256": logo.sha256 if logo else None,
        },
    )


async def _customer(session: AsyncSession, dashboard_user_id: str) -> Customer:
    customer = await customers_service.get_by_dashboard_user_id(session, dashboard_user_id)
    if customer is None:
        raise CustomerNotFound()
    return customer


async def _checked_logo(update: BrandingUpdate) -> ValidatedLogo:
    assert update.logo is not None
    try:
        data = base64.b64decode(update.logo.data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidLogo("The logo is not valid base64.") from None
    try:
        # Decoding an image and drawing it is CPU work: off the event loop.
        return await anyio.to_thread.run_sync(validate_logo, data, update.logo.media_type)
    except BrandingValueError as error:
        raise InvalidLogo(str(error)) from None
