"""stripe-python's errors turned into our typed errors (`errors.py`), here and nowhere else."""

import contextlib
from collections.abc import AsyncIterator

import stripe
import structlog

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


@contextlib.asynccontextmanager
async def translated_errors(*, about_payment_method: bool = False) -> AsyncIterator[None]:
    """Around every Stripe call: a decline, Stripe being unreachable, a request of ours that
    Stripe refused each become the typed error the API answers with.

    `about_payment_method`: the call's path names a payment method the user chose (retrieve,
    attach, detach), so an object missing there is that card, whichever `param` Stripe names
    for a missing path object ("payment_method", "id", or none)."""
    try:
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
        logger.warning("stripe_unreachable", error=str(error))
        raise StripeUnavailable() from error
    except stripe.IdempotencyError as error:
        if error.http_status == 409:
            # Another request with the same key is still running at Stripe.
            raise StripeUnavailable(
                "The same change is still in progress; retry shortly."
            ) from error
        logger.error("stripe_idempotency_mismatch", error=str(error))
        raise StripeIntegrationError() from error
    except stripe.InvalidRequestError as error:
        param = error.param or ""
        names_the_card = "payment_method" in param or (about_payment_method and param in ("", "id"))
        if error.code == "resource_missing" and names_the_card:
            raise PaymentMethodNotFound() from error
        if error.code in _PAYMENT_METHOD_STATE_CODES:
            raise PaymentMethodUnusable(error.user_message or None) from error
        logger.error("stripe_rejected_request", code=error.code, param=param, error=str(error))
        raise StripeIntegrationError() from error
    except stripe.StripeError as error:
        status = error.http_status or 0
        if status >= 500 or status == 0:
            logger.warning("stripe_unavailable", status=status, error=str(error))
            raise StripeUnavailable() from error
        logger.error("stripe_error", status=status, code=error.code, error=str(error))
        raise StripeIntegrationError() from error
