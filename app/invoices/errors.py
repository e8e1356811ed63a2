from typing import Any

from app.core.errors import AppError, Conflict, InvalidRequest, NotFound
from app.customers.errors import CustomerNotFound as CustomerNotFound


class BillingRecordNotFound(NotFound):
    code = "billing_record_not_found"
    message = "No such billing-history entry."


class InvoiceNotFinal(Conflict):
    code = "invoice_not_final"
    message = "Only a final invoice (open, paid or uncollectible) has a PDF."

    def __init__(self, status: str) -> None:
        super().__init__(
            f"This invoice is {status}: only a final invoice (open, paid or uncollectible) "
            "has a PDF.",
            details={"status": status},
        )


class NotAnInvoice(Conflict):
    code = "not_an_invoice"
    message = "This entry is a refund, not an invoice: it has no invoice PDF."


class NotYetInvoiced(Conflict):
    code = "not_yet_invoiced"
    message = (
        "This overage is waiting for the subscription's next invoice; the PDF is that "
        "invoice's, once it is issued."
    )


class InvoiceMissingOnStripe(NotFound):
    code = "invoice_not_found"
    message = "Stripe has no such invoice."


class InvoiceRenderingError(AppError):
    status_code = 500
    code = "invoice_rendering_failed"
    message = "The invoice PDF could not be produced."


class StoredDocumentCorrupt(AppError):
    """The stored bytes no longer match their checksum: never served, always investigated."""

    status_code = 500
    code = "stored_document_corrupt"
    message = "The stored invoice PDF failed its integrity check."


class InvalidLogo(InvalidRequest):
    code = "invalid_logo"
    message = "The logo cannot be used."

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason, details={"field": "logo", **details})
