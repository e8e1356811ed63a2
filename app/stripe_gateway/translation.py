"""stripe-python's errors turned into our typed errors (`errors.py`), here and nowhere else."""

import contextlib
from collections.abc import AsyncIterator, Iterator

import stripe
import structlog

from app.core.metrics import STRIPE_CALLS
from app.stripe_gateway.errors import (
    PaymentDeclined,
    PaymentMethodNotFound,
    PaymentMethodUnusable,
    StripeIntegrationError,
    StripeUnavailable,
)

logger = structlog.get_logger(__name__)

# Invalid-request codes caused by what the user sent (not by how we built the request).
_PAYMENT_METHOD_STATE_CODES = {
    "payment_method_unexpected_state",
    "payment_method_not_available",
    "payment_method_customer_decline",
    "setup_intent_authentication_failure",
}


# `billing_stripe_calls_total{outcome}`: the first matching class names the outcome.
_OUTCOMES: tuple[tuple[type[stripe.StripeError], str], ...] = (
    (stripe.CardError, "card_declined"),
    (stripe.RateLimitError, "rate_limited"),
    (stripe.APIConnectionError, "connection_error"),
    (stripe.IdempotencyError, "idempotency_error"),
    (stripe.InvalidRequestError, "invalid_request"),
    (stripe.AuthenticationError, "authentication_error"),
    (stripe.PermissionError, "permission_error"),
)


@contextlib.contextmanager
def _counted_by_outcome() -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as error:
        outcome = next((name for kind, name in _OUTCOMES if isinstance(error, kind)), None)
        if outcome is None:
            outcome = "server_error" if (error.http_status or 500) >= 500 else "other_error"
        STRIPE_CALLS.labels(outcome=outcome).inc()
        raise
    STRIPE_CALLS.labels(outcome="success").inc()


@contextlib.asynccontextmanager
async def translated_errors(*, about_payment_method: bool = False) -> AsyncIterator[None]:
    """Around every Stripe call: a decline, Stripe being unreachable, a request of ours that
    Stripe refused each become the typed error the API answers with.

    `about_payment_method`: the call's path names a payment method the user chose (retrieve,
    attach, detach), so an object missing there is that card, whichever `param` Stripe names
    for a missing path object ("payment_method", "id", or none)."""
    try:
        with _counted_by_outcome():
            yield
    except stripe.CardError as error:
        raise PaymentDeclined(
            error.user_message or "The card was declined.",
            details={
                "decline_code": getattr(error.error, "decline_code", None),
                "stripe_code": error.code,
            },
        ) from error
    except (stripe.APIConnectionError, stripe.RateLimitError) as error:
        logger.warning("stripe_unreachable", error=str(error), stripe_request_id=error.request_id)
        raise StripeUnavailable() from error
    except stripe.IdempotencyError as error:
        if error.http_status == 409:
            # Another request with the same key is still running at Stripe.
            raise StripeUnavailable(
                "The same change is still in progress; retry shortly."
            ) from error
        logger.error(
            "stripe_idempotency_mismatch", error=str(error), stripe_request_id=error.request_id
        )
        raise StripeIntegrationError() from error
    except stripe.InvalidRequestError as error:
        param = error.param or ""
        names_the_card = "payment_method" in param or (about_payment_method and param in ("", "id"))
        if error.code == "resource_missing" and names_the_card:
            raise PaymentMethodNotFound() from error
        if error.code in _PAYMENT_METHOD_STATE_CODES:
            raise PaymentMethodUnusable(error.user_message or None) from error
        logger.error(
            "stripe_rejected_request",
            code=error.code,
            param=param,
            error=str(error),
            stripe_request_id=error.request_id,
        )
        raise StripeIntegrationError() from error
    except stripe.StripeError as error:
        status = error.http_status or 0
        if status >= 500 or status == 0:
            logger.warning(
                "stripe_unavailable",
                status=status,
                error=str(error),
                stripe_request_id=error.request_id,
            )
            raise StripeUnavailable() from error
        logger.error(
            "stripe_error",
            status=status,
            code=error.code,
            error=str(error),
            stripe_request_id=error.request_id,
        )
        raise StripeIntegrationError() from error
