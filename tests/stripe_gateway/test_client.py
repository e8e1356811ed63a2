"""`StripeGateway` against `FakeStripe`: what it sends to Stripe, what it makes of the answers."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import stripe

from app.core.periods import add_months
from app.stripe_gateway.calls.customers import search_literal
from app.stripe_gateway.client import SAAS_TAX_CODE, StripeGateway
from app.stripe_gateway.errors import (
    PaymentDeclined,
    PaymentMethodNotFound,
    StripeIntegrationError,
    StripeUnavailable,
)
from tests.stripe.fake import FakeStripe, StripeRequest
from tests.stripe.wire import Params, StripeObject, resource_missing

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GOOD_CARD = "pm_card_visa"
DECLINED_CARD = "pm_card_chargeDeclined"
INSUFFICIENT_FUNDS_CARD = "pm_card_chargeDeclinedInsufficientFunds"
SCA_CARD = "pm_card_authenticationRequired"


def only(requests: list[StripeRequest]) -> StripeRequest:
    assert len(requests) == 1, requests
    return requests[0]


def customer_with_card(fake: FakeStripe, card: str | None = GOOD_CARD) -> str:
    customer = fake.add_customer(email="ada@example.com", metadata={"dashboard_user_id": "42"})
    if card is not None:
        fake.add_payment_method(card, customer=customer["id"])
        customer["invoice_settings"]["default_payment_method"] = card
    return str(customer["id"])


async def subscribe(
    gateway: StripeGateway, customer_id: str, price: str = "price_pro_month", trial_days: int = 0
) -> str:
    subscription = await gateway.create_subscription(
        customer_id=customer_id,
        items=[(price, 1)],
        trial_days=trial_days,
        metadata={"reservation_id": "res_1"},
        idempotency_key=f"sub-{customer_id}-{price}",
    )
    return subscription.id


# --- requests ------------------------------------------------------------------------


async def test_every_request_pins_the_api_version_of_stripe_python(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake)
    await gateway.default_payment_method_id(customer_id=customer_id)
    await subscribe(gateway, customer_id)

    assert fake.requests
    assert {request.stripe_version for request in fake.requests} == {stripe.api_version}
    assert stripe.api_version == "2026-10-28.endive"


# --- customers -----------------------------------------------------------------------


async def test_create_customer_sends_our_user_id_and_the_idempotency_key(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = await gateway.create_customer(
        dashboard_user_id="42", email="ada@example.com", name="Ada", idempotency_key="cus-42"
    )

    request = only(fake.calls("POST", "/v1/customers"))
    assert request.params == {
        "metadata": {"dashboard_user_id": "42"},
        "email": "ada@example.com",
        "name": "Ada",
    }
    assert request.idempotency_key == "cus-42"
    assert fake.customers[customer_id]["email"] == "ada@example.com"


async def test_create_customer_retried_with_its_key_creates_one_customer(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    first = await gateway.create_customer(
        dashboard_user_id="42", email=None, name=None, idempotency_key="cus-42"
    )
    again = await gateway.create_customer(
        dashboard_user_id="42", email=None, name=None, idempotency_key="cus-42"
    )

    assert again == first
    assert list(fake.customers) == [first]
    assert len(fake.calls("POST", "/v1/customers")) == 2


async def test_a_key_reused_with_other_parameters_is_our_bug(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    await gateway.create_customer(
        dashboard_user_id="42", email=None, name=None, idempotency_key="cus-42"
    )

    with pytest.raises(StripeIntegrationError):
        await gateway.create_customer(
            dashboard_user_id="43", email=None, name=None, idempotency_key="cus-42"
        )
    assert len(fake.customers) == 1


async def test_find_customer_by_our_metadata(gateway: StripeGateway, fake: FakeStripe) -> None:
    fake.add_customer(id="cus_other", email="ada@example.com")
    fake.add_customer(id="cus_ours", email="ada@example.com", metadata={"dashboard_user_id": "42"})

    found = await gateway.find_customer(dashboard_user_id="42")

    assert found == "cus_ours"
    search = only(fake.calls("GET", "/v1/customers/search"))
    assert search.params == {"query": "metadata['dashboard_user_id']:'42'", "limit": "1"}
    assert fake.calls("GET", "/v1/customers") == []


async def test_find_customer_never_takes_a_customer_by_its_email(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    # A legacy customer without our metadata, with the email a user can type on the dashboard.
    fake.add_customer(id="cus_legacy", email="ada@example.com")

    assert await gateway.find_customer(dashboard_user_id="42") is None
    assert fake.calls("GET", "/v1/customers") == []


def test_a_search_value_cannot_leave_its_quotes() -> None:
    assert search_literal("42") == "'42'"
    assert search_literal("x' OR email:'a@b.c") == "'x\\' OR email:\\'a@b.c'"
    assert search_literal("a\\'b") == "'a\\\\\\'b'"


# --- payment methods -----------------------------------------------------------------


async def test_attach_a_card_and_make_it_the_default(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake, card=None)
    fake.add_payment_method("pm_mastercard", brand="mastercard", last4="4444", exp_year=2031)

    card = await gateway.attach_payment_method(
        payment_method_id="pm_mastercard", customer_id=customer_id, idempotency_key="attach-1"
    )
    await gateway.set_default_payment_method(
        customer_id=customer_id, payment_method_id="pm_mastercard", idempotency_key="default-1"
    )

    assert (card.id, card.customer_id, card.brand, card.last4) == (
        "pm_mastercard",
        customer_id,
        "mastercard",
        "4444",
    )
    attach = only(fake.calls("POST", "/v1/payment_methods/pm_mastercard/attach"))
    assert (attach.params, attach.idempotency_key) == ({"customer": customer_id}, "attach-1")
    update = only(fake.calls("POST", f"/v1/customers/{customer_id}"))
    assert update.params == {"invoice_settings": {"default_payment_method": "pm_mastercard"}}
    assert update.idempotency_key == "default-1"
    assert await gateway.default_payment_method_id(customer_id=customer_id) == "pm_mastercard"
    cards = await gateway.list_payment_methods(customer_id=customer_id)
    assert [card.id for card in cards] == ["pm_mastercard"]
    assert only(fake.calls("GET", "/v1/payment_methods")).params == {
        "customer": customer_id,
        "type": "card",
        "limit": "100",
    }


async def test_a_card_of_another_customer_is_still_retrieved(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    fake.add_customer(id="cus_other")
    fake.add_payment_method("pm_theirs", customer="cus_other")

    card = await gateway.retrieve_payment_method("pm_theirs")

    assert card.customer_id == "cus_other"


@pytest.mark.parametrize("call", ["retrieve", "attach", "set_default"])
async def test_a_missing_payment_method_is_not_found(
    gateway: StripeGateway, fake: FakeStripe, call: str
) -> None:
    customer_id = customer_with_card(fake, card=None)

    with pytest.raises(PaymentMethodNotFound):
        if call == "retrieve":
            await gateway.retrieve_payment_method("pm_missing")
        elif call == "attach":
            await gateway.attach_payment_method(
                payment_method_id="pm_missing", customer_id=customer_id, idempotency_key="a"
            )
        else:
            await gateway.set_default_payment_method(
                customer_id=customer_id, payment_method_id="pm_missing", idempotency_key="d"
            )


@pytest.mark.parametrize("param", ["id", None])
@pytest.mark.parametrize("call", ["retrieve", "attach", "detach"])
async def test_a_missing_payment_method_is_not_found_whichever_param_stripe_names(
    gateway: StripeGateway, fake: FakeStripe, call: str, param: str | None
) -> None:
    """The fake names `payment_method`; Stripe names `id` for most objects missing from a
    path. Either way the card the user chose does not exist, not a request we built wrongly."""
    customer_id = customer_with_card(fake, card=None)

    def missing(params: Params, payment_method_id: str) -> StripeObject:
        raise resource_missing("PaymentMethod", payment_method_id, param=param)

    for route in list(fake.routes):
        if route.pattern.pattern.startswith("/v1/payment_methods/"):
            fake.add_route(route.method, route.pattern.pattern, route.params_type, missing)

    with pytest.raises(PaymentMethodNotFound):
        if call == "retrieve":
            await gateway.retrieve_payment_method(GOOD_CARD)
        elif call == "attach":
            await gateway.attach_payment_method(
                payment_method_id=GOOD_CARD, customer_id=customer_id, idempotency_key="a"
            )
        else:
            await gateway.detach_payment_method(payment_method_id=GOOD_CARD, idempotency_key="d")


async def test_a_missing_customer_on_attach_is_our_error_not_the_cards(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    with pytest.raises(StripeIntegrationError):
        await gateway.attach_payment_method(
            payment_method_id=GOOD_CARD, customer_id="cus_unknown", idempotency_key="a"
        )


async def test_detach_the_default_card(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer_id = customer_with_card(fake)

    await gateway.detach_payment_method(payment_method_id=GOOD_CARD, idempotency_key="detach-1")

    assert only(fake.calls("POST", f"/v1/payment_methods/{GOOD_CARD}/detach")).params == {}
    assert fake.payment_methods[GOOD_CARD]["customer"] is None
    assert await gateway.default_payment_method_id(customer_id=customer_id) is None


async def test_create_setup_intent_for_off_session_card_payments(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake, card=None)

    client_secret = await gateway.create_setup_intent(
        customer_id=customer_id, idempotency_key="seti-1"
    )

    request = only(fake.calls("POST", "/v1/setup_intents"))
    assert request.params == {
        "customer": customer_id,
        "usage": "off_session",
        "allowed_payment_method_types": ["card"],
    }
    assert request.idempotency_key == "seti-1"
    (setup_intent,) = fake.setup_intents.values()
    assert setup_intent["payment_method_types"] == ["card"]
    assert client_secret == setup_intent["client_secret"]
    assert client_secret.startswith(f"{setup_intent['id']}_secret_")


# --- subscriptions -------------------------------------------------------------------


async def test_create_subscription_sends_allow_incomplete_flexible_billing_and_expansions(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake)

    subscription = await gateway.create_subscription(
        customer_id=customer_id,
        items=[("price_pro_month", 2)],
        trial_days=0,
        metadata={"reservation_id": "res_1"},
        idempotency_key="sub-res_1",
    )

    request = only(fake.calls("POST", "/v1/subscriptions"))
    assert request.params == {
        "customer": customer_id,
        "items": [{"price": "price_pro_month", "quantity": "2"}],
        "payment_behavior": "allow_incomplete",
        "billing_mode": {"type": "flexible"},
        "metadata": {"reservation_id": "res_1"},
        "expand": ["latest_invoice.confirmation_secret", "pending_setup_intent"],
    }
    assert request.idempotency_key == "sub-res_1"
    assert subscription.status == "active"
    assert subscription.customer_id == customer_id
    assert subscription.latest_invoice_status == "paid"
    assert subscription.metadata == {"reservation_id": "res_1"}
    assert subscription.has_pending_update is False
    (item,) = subscription.items
    assert (item.price_id, item.quantity) == ("price_pro_month", 2)
    assert (item.current_period_start, item.current_period_end) == (NOW, NOW + timedelta(days=30))
    invoice = fake.invoices[str(subscription.latest_invoice_id)]
    assert invoice["amount_paid"] == 5800
    assert invoice["billing_reason"] == "subscription_create"
    assert invoice["parent"]["subscription_details"]["subscription"] == subscription.id


async def test_a_yearly_price_bills_a_year(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer_id = customer_with_card(fake)

    subscription = await gateway.retrieve_subscription(
        await subscribe(gateway, customer_id, price="price_pro_year")
    )

    assert subscription.current_period_end == NOW + timedelta(days=365)
    assert only(fake.calls("GET", f"/v1/subscriptions/{subscription.id}")).params == {
        "expand": ["latest_invoice.confirmation_secret", "pending_setup_intent"]
    }


async def test_a_trial_charges_nothing(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer_id = customer_with_card(fake)

    subscription = await gateway.create_subscription(
        customer_id=customer_id,
        items=[("price_pro_month", 1)],
        trial_days=14,
        metadata={},
        idempotency_key="sub-trial",
    )

    assert only(fake.calls("POST", "/v1/subscriptions")).params["trial_period_days"] == "14"
    assert subscription.status == "trialing"
    assert subscription.trial_end == NOW + timedelta(days=14)
    assert subscription.setup_intent_client_secret is None
    assert fake.charges == {}


async def test_a_trial_with_a_card_that_needs_sca_returns_the_setup_intent_secret(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake, card=SCA_CARD)

    subscription = await gateway.create_subscription(
        customer_id=customer_id,
        items=[("price_pro_month", 1)],
        trial_days=14,
        metadata={},
        idempotency_key="sub-trial",
    )

    assert subscription.status == "trialing"
    assert subscription.setup_intent_status == "requires_action"
    (setup_intent,) = fake.setup_intents.values()
    assert subscription.setup_intent_client_secret == setup_intent["client_secret"]


@pytest.mark.parametrize(
    ("card", "decline_code"),
    [(DECLINED_CARD, "generic_decline"), (INSUFFICIENT_FUNDS_CARD, "insufficient_funds")],
)
async def test_a_declined_first_payment_leaves_the_subscription_incomplete(
    gateway: StripeGateway, fake: FakeStripe, card: str, decline_code: str
) -> None:
    customer_id = customer_with_card(fake, card=card)

    subscription = await gateway.retrieve_subscription(await subscribe(gateway, customer_id))
    outcome = await gateway.latest_payment_outcome(invoice_id=str(subscription.latest_invoice_id))

    assert subscription.status == "incomplete"
    assert subscription.latest_invoice_status == "open"
    assert outcome.payment_intent_status == "requires_payment_method"
    assert outcome.decline_code == decline_code
    assert outcome.failure_message
    request = only(fake.calls("GET", "/v1/invoice_payments"))
    assert request.params == {
        "invoice": subscription.latest_invoice_id,
        "expand": ["data.payment.payment_intent"],
        "limit": "10",
    }


async def test_a_first_payment_that_needs_sca_gives_the_invoice_client_secret(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake, card=SCA_CARD)

    subscription = await gateway.retrieve_subscription(await subscribe(gateway, customer_id))
    outcome = await gateway.latest_payment_outcome(invoice_id=str(subscription.latest_invoice_id))

    assert subscription.status == "incomplete"
    (payment_intent,) = fake.payment_intents.values()
    assert subscription.invoice_client_secret == payment_intent["client_secret"]
    assert (outcome.payment_intent_status, outcome.decline_code) == ("requires_action", None)

    fake.pay_invoice_out_of_band(str(subscription.latest_invoice_id))

    completed = await gateway.retrieve_subscription(subscription.id)
    assert (completed.status, completed.latest_invoice_status) == ("active", "paid")


async def test_an_unknown_price_is_an_integration_error(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake)

    with pytest.raises(StripeIntegrationError):
        await subscribe(gateway, customer_id, price="price_gone")
    assert fake.subscriptions == {}


async def test_find_subscription_by_metadata_looks_at_every_status(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake, card=DECLINED_CARD)
    subscription_id = await subscribe(gateway, customer_id)

    found = await gateway.find_subscription_by_metadata(
        customer_id=customer_id, key="reservation_id", value="res_1"
    )
    missing = await gateway.find_subscription_by_metadata(
        customer_id=customer_id, key="reservation_id", value="res_2"
    )

    assert found is not None
    assert (found.id, found.status) == (subscription_id, "incomplete")
    assert missing is None
    assert fake.calls("GET", "/v1/subscriptions")[0].params == {
        "customer": customer_id,
        "status": "all",
        "limit": "100",
    }


# --- paying an open invoice ----------------------------------------------------------


async def test_pay_invoice_declined_then_paid_with_another_card(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake, card=DECLINED_CARD)
    subscription = await gateway.retrieve_subscription(await subscribe(gateway, customer_id))
    invoice_id = str(subscription.latest_invoice_id)

    with pytest.raises(PaymentDeclined) as declined:
        await gateway.pay_invoice(
            invoice_id=invoice_id,
            payment_method_id=INSUFFICIENT_FUNDS_CARD,
            idempotency_key="pay-1",
        )
    status = await gateway.pay_invoice(
        invoice_id=invoice_id, payment_method_id=GOOD_CARD, idempotency_key="pay-2"
    )

    assert declined.value.status_code == 402
    assert declined.value.details == {
        "decline_code": "insufficient_funds",
        "stripe_code": "card_declined",
    }
    first = fake.calls("POST", f"/v1/invoices/{invoice_id}/pay")[0]
    assert (first.params, first.idempotency_key) == (
        {"payment_method": INSUFFICIENT_FUNDS_CARD},
        "pay-1",
    )
    assert status == "paid"
    assert (await gateway.retrieve_subscription(subscription.id)).status == "active"


async def test_pay_invoice_with_a_card_that_needs_sca(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake, card=DECLINED_CARD)
    subscription = await gateway.retrieve_subscription(await subscribe(gateway, customer_id))

    with pytest.raises(PaymentDeclined) as declined:
        await gateway.pay_invoice(
            invoice_id=str(subscription.latest_invoice_id),
            payment_method_id=SCA_CARD,
            idempotency_key="pay-1",
        )

    assert declined.value.details == {
        "decline_code": None,
        "stripe_code": "invoice_payment_intent_requires_action",
    }
    after = await gateway.retrieve_subscription(subscription.id)
    assert after.invoice_client_secret is not None


# --- changing a subscription ---------------------------------------------------------


async def test_an_upgrade_charged_now_applies_when_paid(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake)
    subscription = await gateway.retrieve_subscription(await subscribe(gateway, customer_id))
    item = subscription.items[0]

    upgraded = await gateway.update_subscription(
        subscription_id=subscription.id,
        params={
            "items": [{"id": item.id, "price": "price_business_month"}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
        },
        idempotency_key="upgrade-1",
    )

    request = only(fake.calls("POST", f"/v1/subscriptions/{subscription.id}"))
    assert request.params == {
        "items": [{"id": item.id, "price": "price_business_month"}],
        "proration_behavior": "always_invoice",
        "payment_behavior": "pending_if_incomplete",
        "expand": ["latest_invoice.confirmation_secret", "pending_setup_intent"],
    }
    assert request.idempotency_key == "upgrade-1"
    assert [item.price_id for item in upgraded.items] == ["price_business_month"]
    assert upgraded.has_pending_update is False
    assert upgraded.latest_invoice_status == "paid"
    proration = fake.invoices[str(upgraded.latest_invoice_id)]
    assert (proration["billing_reason"], proration["amount_paid"]) == ("subscription_update", 7000)


async def test_a_declined_upgrade_with_pending_if_incomplete_waits_in_pending_update(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake)
    subscription = await gateway.retrieve_subscription(await subscribe(gateway, customer_id))
    fake.customers[customer_id]["invoice_settings"]["default_payment_method"] = DECLINED_CARD
    fake.subscriptions[subscription.id]["default_payment_method"] = None

    pending = await gateway.update_subscription(
        subscription_id=subscription.id,
        params={
            "items": [{"id": subscription.items[0].id, "price": "price_business_month"}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
        },
        idempotency_key="upgrade-1",
    )

    assert pending.status == "active"
    assert pending.has_pending_update is True
    assert [item.price_id for item in pending.items] == ["price_pro_month"]
    assert pending.latest_invoice_status == "open"
    assert pending.latest_invoice_id != subscription.latest_invoice_id

    fake.pay_invoice_out_of_band(str(pending.latest_invoice_id))

    applied = await gateway.retrieve_subscription(subscription.id)
    assert [item.price_id for item in applied.items] == ["price_business_month"]
    assert applied.has_pending_update is False


async def test_cancel_at_period_end_then_now(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer_id = customer_with_card(fake)
    subscription_id = await subscribe(gateway, customer_id)

    at_end = await gateway.update_subscription(
        subscription_id=subscription_id,
        params={"cancel_at_period_end": True},
        idempotency_key="cancel-later",
    )
    fake.now += 3600
    canceled = await gateway.cancel_subscription_now(
        subscription_id=subscription_id, idempotency_key="cancel-now"
    )

    assert at_end.cancel_at_period_end is True
    update = only(fake.calls("POST", f"/v1/subscriptions/{subscription_id}"))
    assert update.params["cancel_at_period_end"] == "true"
    request = only(fake.calls("DELETE", f"/v1/subscriptions/{subscription_id}"))
    assert (request.params, request.idempotency_key) == ({"prorate": "false"}, "cancel-now")
    assert canceled.status == "canceled"
    assert canceled.canceled_at == canceled.ended_at == NOW + timedelta(hours=1)


async def test_add_change_and_remove_an_item(gateway: StripeGateway, fake: FakeStripe) -> None:
    fake.add_price(id="price_seat", product="plan_pro", unit_amount=500)
    customer_id = customer_with_card(fake)
    subscription_id = await subscribe(gateway, customer_id)

    item_id = await gateway.add_subscription_item(
        subscription_id=subscription_id, price_id="price_seat", quantity=2, idempotency_key="add"
    )
    await gateway.update_subscription_item(
        item_id=item_id, quantity=3, idempotency_key="more", charge_now=True
    )
    with_seats = await gateway.retrieve_subscription(subscription_id)
    await gateway.remove_subscription_item(item_id=item_id, idempotency_key="remove")
    without = await gateway.retrieve_subscription(subscription_id)

    assert only(fake.calls("POST", "/v1/subscription_items")).params == {
        "subscription": subscription_id,
        "price": "price_seat",
        "quantity": "2",
        "proration_behavior": "always_invoice",
        "payment_behavior": "pending_if_incomplete",
    }
    assert only(fake.calls("POST", f"/v1/subscription_items/{item_id}")).params == {
        "quantity": "3",
        "proration_behavior": "always_invoice",
        "payment_behavior": "pending_if_incomplete",
    }
    delete = only(fake.calls("DELETE", f"/v1/subscription_items/{item_id}"))
    assert (delete.params, delete.idempotency_key) == (
        {"proration_behavior": "create_prorations"},
        "remove",
    )
    seat = with_seats.item_for_price({"price_seat"})
    assert seat is not None
    assert (seat.id, seat.quantity) == (item_id, 3)
    assert [item.price_id for item in without.items] == ["price_pro_month"]
    charged = sorted(invoice["amount_paid"] for invoice in fake.invoices.values())
    assert charged == [500, 1000, 2900]


# --- schedules and previews ----------------------------------------------------------


async def test_schedule_a_downgrade_at_the_period_end_then_release_it(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake)
    subscription_id = await subscribe(gateway, customer_id, price="price_business_month")
    start, end = int(NOW.timestamp()), int((NOW + timedelta(days=30)).timestamp())

    created = await gateway.create_schedule_from_subscription(
        subscription_id=subscription_id, idempotency_key="schedule-1"
    )
    updated = await gateway.schedule_change_at_period_end(
        schedule_id=created.id,
        current_phase_start=start,
        period_end=end,
        current_items=[("price_business_month", 1)],
        next_items=[("price_pro_month", 1)],
        next_interval="month",
        idempotency_key="schedule-2",
    )
    scheduled = await gateway.retrieve_subscription(subscription_id)
    await gateway.release_schedule(schedule_id=created.id, idempotency_key="release-1")
    await gateway.release_schedule(schedule_id=created.id, idempotency_key="release-2")
    released = await gateway.retrieve_subscription(subscription_id)

    assert only(fake.calls("POST", "/v1/subscription_schedules")).params == {
        "from_subscription": subscription_id
    }
    assert (created.status, created.phase_bounds) == ("active", ((start, end),))
    assert created.current_phase_items == (("price_business_month", 1),)
    update = only(fake.calls("POST", f"/v1/subscription_schedules/{created.id}"))
    assert update.params == {
        "end_behavior": "release",
        "proration_behavior": "none",
        "phases": [
            {
                "items": [{"price": "price_business_month", "quantity": "1"}],
                "start_date": str(start),
                "end_date": str(end),
            },
            {
                "items": [{"price": "price_pro_month", "quantity": "1"}],
                "duration": {"interval": "month", "interval_count": "1"},
            },
        ],
    }
    # A calendar month on: December 25th to January 25th (31 days).
    assert updated.phase_bounds == ((start, end), (end, int(add_months(NOW, 2).timestamp())))
    assert scheduled.schedule_id == created.id
    assert released.schedule_id is None
    assert fake.schedules[created.id]["status"] == "released"
    assert len(fake.calls("POST", f"/v1/subscription_schedules/{created.id}/release")) == 2


async def test_preview_an_upgrade(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer_id = customer_with_card(fake)
    subscription = await gateway.retrieve_subscription(await subscribe(gateway, customer_id))
    item = subscription.items[0]
    proration_date = int(NOW.timestamp()) + 3600

    preview = await gateway.preview_change(
        customer_id=customer_id,
        subscription_id=subscription.id,
        items=[{"id": item.id, "price": "price_business_month"}],
        proration_date=proration_date,
    )

    request = only(fake.calls("POST", "/v1/invoices/create_preview"))
    assert request.params == {
        "customer": customer_id,
        "subscription": subscription.id,
        "subscription_details": {
            "items": [{"id": item.id, "price": "price_business_month"}],
            "proration_date": str(proration_date),
            "proration_behavior": "create_prorations",
        },
    }
    assert preview.proration_amount == 9900 - 2900
    assert preview.total == 7000 + 9900
    assert preview.currency == "usd"
    assert preview.period_end == item.current_period_end
    assert preview.next_payment_attempt == item.current_period_end
    assert [item.price_id for item in subscription.items] == ["price_pro_month"]


# --- catalog and account -------------------------------------------------------------


async def test_create_product_as_saas_and_retrieve_it(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    assert await gateway.retrieve_product("plan_team") is None

    product = await gateway.create_product(
        product_id="plan_team",
        name="Team",
        description="For teams",
        metadata={"plan_code": "team"},
        idempotency_key="product-team",
    )
    renamed = await gateway.update_product(
        product_id="plan_team",
        name="Team plan",
        description="",
        active=False,
        idempotency_key="product-team-2",
    )

    request = only(fake.calls("POST", "/v1/products"))
    assert request.params == {
        "id": "plan_team",
        "name": "Team",
        "tax_code": SAAS_TAX_CODE,
        "metadata": {"plan_code": "team"},
        "description": "For teams",
    }
    assert SAAS_TAX_CODE == "txcd_10103001"
    assert (product.id, product.tax_code, product.metadata) == (
        "plan_team",
        "txcd_10103001",
        {"plan_code": "team"},
    )
    assert (renamed.name, renamed.active) == ("Team plan", False)
    assert await gateway.retrieve_product("plan_team") == renamed


async def test_create_an_existing_product_is_an_integration_error(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    with pytest.raises(StripeIntegrationError):
        await gateway.create_product(
            product_id="plan_pro", name="Pro", description="", metadata={}, idempotency_key="p"
        )


async def test_create_price_moves_the_lookup_key_and_archive_the_old_one(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    fake.prices["price_pro_month"]["lookup_key"] = "pro_month"

    price = await gateway.create_price(
        product_id="plan_pro",
        unit_amount=3900,
        currency="usd",
        interval="month",
        lookup_key="pro_month",
        metadata={"version": "2"},
        idempotency_key="price-pro-2",
    )
    await gateway.archive_price(price_id="price_pro_month", idempotency_key="archive-1")
    by_key = await gateway.prices_by_lookup_key(["pro_month", "business_month"])

    assert only(fake.calls("POST", "/v1/prices")).params == {
        "product": "plan_pro",
        "unit_amount": "3900",
        "currency": "usd",
        "recurring": {"interval": "month"},
        "lookup_key": "pro_month",
        "transfer_lookup_key": "true",
        "tax_behavior": "exclusive",
        "metadata": {"version": "2"},
    }
    assert (price.unit_amount, price.lookup_key, price.tax_behavior) == (
        3900,
        "pro_month",
        "exclusive",
    )
    assert only(fake.calls("POST", "/v1/prices/price_pro_month")).params == {"active": "false"}
    assert fake.prices["price_pro_month"]["lookup_key"] is None
    assert fake.prices["price_pro_month"]["active"] is False
    assert list(by_key) == ["pro_month"]
    assert by_key["pro_month"].id == price.id
    assert only(fake.calls("GET", "/v1/prices")).params == {
        "lookup_keys": ["pro_month", "business_month"],
        "limit": "100",
    }


async def test_account_and_webhook_endpoints(gateway: StripeGateway, fake: FakeStripe) -> None:
    fake.add_webhook_endpoint(
        url="https://billing.example.com/webhooks/stripe",
        api_version=stripe.api_version,
        enabled_events=["invoice.paid", "invoice.payment_failed"],
    )

    account = await gateway.retrieve_account()
    (endpoint,) = await gateway.list_webhook_endpoints()

    assert (account.id, account.livemode) == (fake.account["id"], False)
    assert account.display_name == "Fake Call Center"
    assert endpoint.url == "https://billing.example.com/webhooks/stripe"
    assert endpoint.api_version == stripe.api_version
    assert endpoint.enabled_events == ("invoice.paid", "invoice.payment_failed")
    assert endpoint.status == "enabled"


# --- Stripe unavailable --------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_stripe_errors_on_its_side_are_unavailable_and_retryable(
    gateway: StripeGateway, fake: FakeStripe, status: int
) -> None:
    fake.fail_next("POST", "/v1/customers", status=status)

    with pytest.raises(StripeUnavailable) as unavailable:
        await gateway.create_customer(
            dashboard_user_id="42", email=None, name=None, idempotency_key="cus-42"
        )

    assert unavailable.value.status_code == 503
    assert unavailable.value.details == {"retryable": True}
    assert fake.customers == {}
    assert len(fake.calls("POST", "/v1/customers")) == 1


async def test_a_timeout_is_unavailable_and_the_retry_creates_once(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer_id = customer_with_card(fake)
    fake.fail_next("POST", "/v1/subscriptions", timeout=True)

    with pytest.raises(StripeUnavailable):
        await subscribe(gateway, customer_id)
    subscription_id = await subscribe(gateway, customer_id)
    again = await subscribe(gateway, customer_id)

    assert again == subscription_id
    assert list(fake.subscriptions) == [subscription_id]
    keys = [request.idempotency_key for request in fake.calls("POST", "/v1/subscriptions")]
    assert len(keys) == 3
    assert len(set(keys)) == 1


async def test_invoice_details_page_every_line_and_name_discounts_and_taxes(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer = fake.add_customer(email="ada@example.com")
    lines = [
        fake.new_line(100 * index, description=f"Line {index}", price="price_pro_month")
        for index in range(1, 231)
    ]
    lines[0]["parent"]["subscription_item_details"]["proration"] = True
    discount = fake.add_coupon_discount(customer=customer["id"], name="Launch", percent_off=12.5)
    vat = fake.add_tax_rate(display_name="VAT", percentage=19.6, jurisdiction="FR")
    account_tax_id = fake.add_account_tax_id(value="FR12345678901")
    invoice = fake.add_invoice(
        customer=customer["id"],
        lines=lines,
        discounts=[(discount, 500)],
        taxes=[(vat, 980, 5_000)],
        customer_name="Ada Lovelace",
        customer_address={
            "line1": "1 Rue de Rivoli",
            "line2": None,
            "city": "Paris",
            "state": None,
            "postal_code": "75001",
            "country": "FR",
        },
        customer_tax_ids=[{"type": "eu_vat", "value": "FR99999999999"}],
        account_tax_ids=[account_tax_id["id"]],
    )

    details = await gateway.retrieve_invoice_details(invoice["id"])

    assert details is not None
    assert [line.description for line in details.lines] == [f"Line {i}" for i in range(1, 231)]
    assert details.lines[0].proration and not details.lines[1].proration
    assert details.lines[1].price_id == "price_pro_month"
    assert details.lines[1].unit_amount == 200
    # 10 embedded, then 100 and 100 and 20 from the lines endpoint, after the last one seen.
    pages = fake.calls("GET", f"/v1/invoices/{invoice['id']}/lines")
    assert [page.params.get("starting_after") for page in pages] == [
        lines[9]["id"],
        lines[109]["id"],
        lines[209]["id"],
    ]
    assert [(d.name, d.percent_off, d.amount) for d in details.discounts] == [
        ("Launch", Decimal("12.5"), 500)
    ]
    [tax] = details.taxes
    assert (tax.display_name, tax.percentage, tax.jurisdiction, tax.amount) == (
        "VAT",
        Decimal("19.6"),
        "FR",
        980,
    )
    assert details.customer_address is not None
    assert details.customer_address.lines() == ["1 Rue de Rivoli", "75001 Paris", "FR"]
    assert details.customer_tax_ids == (("eu_vat", "FR99999999999"),)
    assert details.account_tax_ids == ("FR12345678901",)
    assert (details.number, details.status, details.customer_name) == (
        "FAKE-0001",
        "open",
        "Ada Lovelace",
    )


async def test_invoice_details_of_an_unknown_invoice_is_none(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    assert await gateway.retrieve_invoice_details("in_missing") is None
