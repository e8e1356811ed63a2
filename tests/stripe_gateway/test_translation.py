import pytest
import stripe

from app.core.metrics import REGISTRY
from app.stripe_gateway.errors import PaymentDeclined, StripeUnavailable
from app.stripe_gateway.translation import translated_errors


def calls(outcome: str) -> float:
    return REGISTRY.get_sample_value("billing_stripe_calls_total", {"outcome": outcome}) or 0.0


async def test_stripe_calls_are_counted_by_outcome() -> None:
    before = {outcome: calls(outcome) for outcome in ("success", "card_declined", "server_error")}

    async with translated_errors():
        pass
    with pytest.raises(PaymentDeclined):
        async with translated_errors():
            # stripe-python leaves this constructor untyped.
            raise stripe.CardError(  # type: ignore[no-untyped-call]
                "Your card was declined.", None, "card_declined"
            )
    with pytest.raises(StripeUnavailable):
        async with translated_errors():
            raise stripe.APIError("Stripe had a problem.", http_status=502)

    assert {outcome: calls(outcome) - before[outcome] for outcome in before} == {
        "success": 1,
        "card_declined": 1,
        "server_error": 1,
    }
