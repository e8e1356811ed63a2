"""Stripe's errors as the client should see them. Mapped in one place: `translation.py`."""

from app.core.errors import AppError, Conflict, NotFound


class PaymentDeclined(AppError):
    status_code = 402
    code = "card_declined"
    message = "The card was declined."


class PaymentMethodNotFound(NotFound):
    code = "payment_method_not_found"
    message = "No such payment method."


class PaymentMethodUnusable(Conflict):
    code = "payment_method_unusable"
    message = "This payment method cannot be used for this customer."


class StripeUnavailable(AppError):
    status_code = 503
    code = "payment_provider_unavailable"
    message = "The payment provider did not answer; retry the same request."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, details={"retryable": True}, headers={"Retry-After": "5"})


class StripeIntegrationError(AppError):
    """Stripe refused a request that we built wrongly: a bug of ours, logged and fixed."""

    status_code = 500
    code = "payment_provider_error"
    message = "The payment provider refused the request."
