import base64
from typing import Annotated, Any

from fastapi import Header, Path, Response

from app.core.auth import BillingAdmin
from app.core.db import SessionDep, SessionmakerDep
from app.core.deps import ClockDep, SettingsDep
from app.core.errors import Forbidden, Unauthorized, error_responses
from app.core.rate_limits import PDF_RENDERING
from app.core.routing import SlashTolerantRouter
from app.core.schemas import DashboardUserIdPath
from app.customers.dependencies import CurrentCustomer
from app.invoices import service
from app.invoices.dependencies import DefaultBrandingDep
from app.invoices.errors import (
    BillingRecordNotFound,
    CustomerNotFound,
    InvalidLogo,
    InvoiceMissingOnStripe,
    InvoiceNotFinal,
    NotAnInvoice,
    NotYetInvoiced,
)
from app.invoices.schemas import BrandingPublic, BrandingResponse, BrandingUpdate, LogoPublic
from app.models import CustomerBranding
from app.stripe_gateway.dependencies import StripeGatewayDep
from app.stripe_gateway.errors import StripeUnavailable

router = SlashTolerantRouter(tags=["billing history"])
admin_router = SlashTolerantRouter(
    prefix="/admin",
    tags=["admin: branding"],
    responses=error_responses(Unauthorized, Forbidden, CustomerNotFound),
)

RecordId = Annotated[int, Path(ge=1, le=2**63 - 1)]

_PDF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The invoice PDF: the same bytes on every download.",
    },
    304: {"description": "Not modified (`If-None-Match` matched the ETag)."},
}


@router.get(
    "/billing-history/{record_id}/pdf/",
    response_class=Response,
    responses={
        **_PDF_RESPONSE,
        **error_responses(
            Unauthorized,
            BillingRecordNotFound,
            InvoiceMissingOnStripe,
            InvoiceNotFinal,
            NotAnInvoice,
            NotYetInvoiced,
            StripeUnavailable,
        ),
    },
    summary="The invoice PDF of a billing-history entry",
    # Tighter than the per-caller limit: a first download renders (Stripe calls, Typst).
    dependencies=[PDF_RENDERING],
)
async def get_invoice_pdf(
    record_id: RecordId,
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    clock: ClockDep,
    settings: SettingsDep,
    default_branding: DefaultBrandingDep,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Rendered with the customer's branding (or the service's) at the first download and
    stored: later downloads return the same bytes, even after a branding change."""
    pdf = await service.get_invoice_pdf(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        default_branding=default_branding,
        locale=settings.INVOICE_LOCALE,
        customer=customer,
        record_id=record_id,
    )
    etag = f'"{pdf.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(
        content=pdf.content,
        media_type="application/pdf",
        headers={**headers, "Content-Disposition": f'inline; filename="{pdf.filename}"'},
    )


def _branding_public(dashboard_user_id: str, row: CustomerBranding) -> BrandingPublic:
    logo = None
    if row.logo is not None and row.logo_media_type is not None:
        logo = LogoPublic(
            media_type=row.logo_media_type,
            size_bytes=len(row.logo),
            sha256=row.logo_sha256 or "",
            data=base64.b64encode(row.logo).decode("ascii"),
        )
    return BrandingPublic(
        customer_id=dashboard_user_id,
        company_name=row.company_name,
        address_lines=(row.address or "").splitlines(),
        tax_id=row.tax_id,
        primary_color=row.primary_color,
        footer_text=row.footer_text,
        invoice_number_prefix=row.invoice_number_prefix,
        logo=logo,
        updated_at=row.updated_at,
    )


@admin_router.get(
    "/customers/{customer_id}/branding/",
    response_model=BrandingResponse,
    summary="A customer's invoice branding",
)
async def get_customer_branding(
    customer_id: DashboardUserIdPath, session: SessionDep, _: BillingAdmin
) -> BrandingResponse:
    row = await service.get_customer_branding(session, dashboard_user_id=customer_id)
    return BrandingResponse(branding=_branding_public(customer_id, row) if row else None)


@admin_router.put(
    "/customers/{customer_id}/branding/",
    response_model=BrandingResponse,
    responses=error_responses(InvalidLogo),
    summary="Set a customer's invoice branding (white label)",
)
async def put_customer_branding(
    customer_id: DashboardUserIdPath, body: BrandingUpdate, session: SessionDep, _: BillingAdmin
) -> BrandingResponse:
    """Replaces the whole branding. PDFs stored before keep the branding they were made with."""
    row = await service.set_customer_branding(session, dashboard_user_id=customer_id, update=body)
    return BrandingResponse(branding=_branding_public(customer_id, row))


@admin_router.delete(
    "/customers/{customer_id}/branding/",
    response_model=BrandingResponse,
    summary="Remove a customer's invoice branding (back to the service's own)",
)
async def delete_customer_branding(
    customer_id: DashboardUserIdPath, session: SessionDep, _: BillingAdmin
) -> BrandingResponse:
    await service.remove_customer_branding(session, dashboard_user_id=customer_id)
    return BrandingResponse(branding=None)
