"""The fake's own behaviours that gateway tests rely on: decoding, idempotency, expansion,
failures, refusing what Stripe refuses (unknown parameters, unknown ids) and what it does not
model."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe as stripe_python

from tests.stripe.fake import FakeStripe, Handler
from tests.stripe.fixtures import FIXTURES_PATH, stripe_fixture
from tests.stripe.plugin import (
    FAKE_STRIPE_NOW,
    STRIPE_API,
    fake_stripe,  # noqa: F401
)
from tests.stripe.wire import Params, StripeObject, decode_params, list_object


@pytest.fixture
def http(fake_stripe: FakeStripe) -> Iterator[httpx.Client]:  # noqa: F811 - the imported fixture
    with httpx.Client(
        base_url=STRIPE_API, headers={"Authorization": "Bearer sk_test_123"}
    ) as client:
        yield client


def post(
    http: httpx.Client, path: str, data: dict[str, str], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return http.post(path, data=data, headers=headers)


def test_decode_bracket_form() -> None:
    encoded = (
        "items[0][price]=price_a&items[0][quantity]=2&items[1][price]=price_b"
        "&metadata[k]=v&expand[0]=latest_invoice.confirmation_secret&expand[]=x&flag=true"
    )

    assert decode_params(encoded) == {
        "items": [{"price": "price_a", "quantity": "2"}, {"price": "price_b"}],
        "metadata": {"k": "v"},
        "expand": ["latest_invoice.confirmation_secret", "x"],
        "flag": "true",
    }


def test_fixtures_are_vendored_with_their_provenance() -> None:
    text = FIXTURES_PATH.read_text(encoding="utf-8")

    assert '"_provenance"' in text
    assert "stripe/openapi" in text
    assert stripe_fixture("invoice")["object"] == "invoice"
    assert stripe_fixture("customer") is not stripe_fixture("customer")


def test_now_and_requests_are_recorded(fake_stripe: FakeStripe, http: httpx.Client) -> None:  # noqa: F811
    http.get("/v1/customers", params={"email": "a@example.com"})

    assert fake_stripe.now == FAKE_STRIPE_NOW
    (request,) = fake_stripe.calls("GET", "/v1/")
    assert (request.path, request.params) == ("/v1/customers", {"email": "a@example.com"})


def test_a_key_is_bound_to_its_first_request(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    first = post(http, "/v1/customers", {"email": "a@example.com"}, "cus-1")
    replayed = post(http, "/v1/customers", {"email": "a@example.com"}, "cus-1")
    other_params = post(http, "/v1/customers", {"email": "b@example.com"}, "cus-1")
    other_path = post(http, "/v1/products", {"name": "A"}, "cus-1")
    refused = post(http, "/v1/products", {}, "prod-1")
    retried = post(http, "/v1/products", {"id": "prod_a", "name": "A"}, "prod-1")

    assert replayed.json() == first.json()
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert len(fake_stripe.customers) == 1
    for conflict in (other_params, other_path):
        assert conflict.status_code == 400
        assert conflict.json()["error"]["type"] == "idempotency_error"
    assert refused.status_code == 400  # a request refused upfront does not keep its key
    assert retried.status_code == 200


def test_a_decline_is_replayed_without_a_second_attempt(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=1000)
    customer = fake_stripe.add_customer()
    created = post(
        http, "/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"]}
    ).json()
    invoice_id = created["latest_invoice"]
    pay = {"payment_method": "pm_chargeDeclinedInsufficientFunds"}

    declined = post(http, f"/v1/invoices/{invoice_id}/pay", pay, "pay-1")
    replayed = post(http, f"/v1/invoices/{invoice_id}/pay", pay, "pay-1")

    assert declined.status_code == replayed.status_code == 402
    assert replayed.json() == declined.json()
    assert declined.json()["error"]["decline_code"] == "insufficient_funds"
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert fake_stripe.invoices[invoice_id]["attempt_count"] == 2  # creation, then one pay


def test_includable_and_expandable_fields(fake_stripe: FakeStripe, http: httpx.Client) -> None:  # noqa: F811
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=1000)
    customer = fake_stripe.add_customer()
    fake_stripe.add_payment_method("pm_authenticationRequired", customer=customer["id"])
    customer["invoice_settings"]["default_payment_method"] = "pm_authenticationRequired"
    created = post(
        http, "/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"]}
    ).json()
    subscription_id = created["id"]

    plain = http.get(f"/v1/subscriptions/{subscription_id}").json()
    expanded = http.get(
        f"/v1/subscriptions/{subscription_id}",
        params={"expand[0]": "latest_invoice.confirmation_secret"},
    ).json()
    invoice = http.get(f"/v1/invoices/{created['latest_invoice']}").json()
    wrong = http.get(f"/v1/subscriptions/{subscription_id}", params={"expand[0]": "status"})

    assert isinstance(plain["latest_invoice"], str)
    assert plain["status"] == "incomplete"
    assert plain["items"]["data"][0]["current_period_end"] == FAKE_STRIPE_NOW + 30 * 86400
    assert "current_period_end" not in plain
    secret: dict[str, Any] = expanded["latest_invoice"]["confirmation_secret"]
    assert secret["type"] == "payment_intent"
    assert (
        secret["client_secret"]
        == fake_stripe.payment_intents[next(iter(fake_stripe.payment_intents))]["client_secret"]
    )
    assert "confirmation_secret" not in invoice
    assert "subscription" not in invoice
    assert "payment_intent" not in invoice
    assert invoice["parent"]["subscription_details"]["subscription"] == subscription_id
    assert wrong.status_code == 400


def test_fail_next_counts_down_and_matches_a_prefix(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    fake_stripe.fail_next("GET", "/v1/customers", status=502, times=2)

    answers = [http.get("/v1/customers/search", params={"query": "email:'a'"}) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [502, 502, 200]
    assert answers[0].json()["error"]["type"] == "api_error"
    assert len(fake_stripe.requests) == 3

    fake_stripe.fail_next("GET", "/v1/account", timeout=True)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/v1/account")
    assert http.get("/v1/account").status_code == 200


def test_what_the_fake_does_not_model_is_refused_loudly(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    customer = fake_stripe.add_customer()

    unknown_route = http.get("/v1/charges")
    # Stripe accepts `days_until_due` (for invoices sent by email); the fake does not model it.
    unmodelled_param = post(
        http, "/v1/subscriptions", {"customer": customer["id"], "days_until_due": "30"}
    )

    assert unknown_route.status_code == 404
    assert "FakeStripe" in unknown_route.json()["error"]["message"]
    assert unmodelled_param.status_code == 400
    assert (
        "FakeStripe does not model `days_until_due`" in unmodelled_param.json()["error"]["message"]
    )


def test_a_lookup_key_moves_only_when_asked(fake_stripe: FakeStripe, http: httpx.Client) -> None:  # noqa: F811
    fake_stripe.add_product(id="prod_a", name="A")
    fake_stripe.add_price(id="price_old", product="prod_a", unit_amount=1000, lookup_key="a")
    new_price = {
        "product": "prod_a",
        "unit_amount": "1200",
        "currency": "usd",
        "recurring[interval]": "month",
        "lookup_key": "a",
    }

    refused = post(http, "/v1/prices", new_price)
    moved = post(http, "/v1/prices", {**new_price, "transfer_lookup_key": "true"})

    assert refused.status_code == 400
    assert moved.status_code == 200
    assert moved.json()["lookup_key"] == "a"
    assert fake_stripe.prices["price_old"]["lookup_key"] is None
    assert len(fake_stripe.prices) == 2


def test_a_schedule_keeps_the_start_of_its_current_phase(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=0)
    customer = fake_stripe.add_customer()
    subscription = post(
        http, "/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"]}
    ).json()
    schedule = post(
        http, "/v1/subscription_schedules", {"from_subscription": subscription["id"]}
    ).json()

    moved = post(
        http,
        f"/v1/subscription_schedules/{schedule['id']}",
        {
            "phases[0][items][0][price]": price["id"],
            "phases[0][start_date]": str(FAKE_STRIPE_NOW - 1),
        },
    )
    released = post(http, f"/v1/subscription_schedules/{schedule['id']}/release", {})
    again = post(http, f"/v1/subscription_schedules/{schedule['id']}/release", {})

    assert subscription["status"] == "active"  # nothing to pay
    assert moved.status_code == 400
    assert released.json()["status"] == "released"
    assert again.status_code == 400
    assert "`released` status" in again.json()["error"]["message"]


def test_invoice_items_go_on_drafts_only_and_pending_ones_wait_for_the_renewal(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=1000)
    customer = fake_stripe.add_customer()
    subscription = post(
        http, "/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"]}
    ).json()
    first_invoice = subscription["latest_invoice"]  # finalized at once
    item = {"customer": customer["id"], "amount": "250", "currency": "usd"}

    refused = post(http, "/v1/invoiceitems", {**item, "invoice": first_invoice})
    pending = post(http, "/v1/invoiceitems", {**item, "subscription": subscription["id"]})
    draft = fake_stripe.renew_subscription(subscription["id"])
    added = post(http, "/v1/invoiceitems", {**item, "amount": "-50", "invoice": draft["id"]})
    fake_stripe.finalize_invoice(draft["id"])
    too_late = post(http, "/v1/invoiceitems", {**item, "invoice": draft["id"]})
    listed = http.get("/v1/invoiceitems", params={"customer": customer["id"], "pending": "true"})

    assert refused.status_code == too_late.status_code == 400
    assert pending.status_code == added.status_code == 200
    assert fake_stripe.invoice_items[pending.json()["id"]]["invoice"] == draft["id"]
    assert fake_stripe.invoices[draft["id"]]["total"] == 1000 + 250 - 50
    assert fake_stripe.invoices[draft["id"]]["status"] == "open"
    assert listed.json()["data"] == []


def test_pending_items_are_invoiced_every_pending_invoice_item_interval(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=99_000, interval="year")
    customer = fake_stripe.add_customer()
    subscription = post(
        http,
        "/v1/subscriptions",
        {
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "pending_invoice_item_interval[interval]": "month",
        },
    ).json()
    month_later = int(datetime(2026, 12, 25, 12, 0, tzinfo=UTC).timestamp())
    item = {"customer": customer["id"], "amount": "250", "subscription": subscription["id"]}
    pending = post(http, "/v1/invoiceitems", item).json()

    with pytest.raises(AssertionError, match="no pending items invoice due"):
        fake_stripe.invoice_pending_items(subscription["id"])  # not a month yet
    fake_stripe.now = month_later
    draft = fake_stripe.invoice_pending_items(subscription["id"])
    fake_stripe.now = int(datetime(2027, 1, 25, 12, 0, tzinfo=UTC).timestamp())
    nothing_pending = fake_stripe.invoice_pending_items(subscription["id"])

    assert subscription["next_pending_invoice_item_invoice"] == month_later
    assert draft is not None
    assert (draft["billing_reason"], draft["status"], draft["total"]) == ("manual", "draft", 250)
    assert fake_stripe.invoice_items[pending["id"]]["invoice"] == draft["id"]
    assert nothing_pending is None
    assert fake_stripe.subscriptions[subscription["id"]]["next_pending_invoice_item_invoice"] == (
        int(datetime(2027, 2, 25, 12, 0, tzinfo=UTC).timestamp())
    )


def test_a_parameter_stripe_does_not_list_is_refused_as_stripe_refuses_it(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=1000)
    customer = fake_stripe.add_customer()
    subscription = {"customer": customer["id"], "items[0][price]": price["id"]}

    top_level = post(
        http,
        "/v1/setup_intents",
        {"customer": customer["id"], "payment_method_types[0]": "card"},
        "seti-1",
    )
    nested = post(
        http, "/v1/subscriptions", {**subscription, "items[0][price_data_typo]": "x"}, "sub-1"
    )
    in_a_list = post(
        http,
        "/v1/subscriptions",
        {**subscription, "items[1][price]": price["id"], "items[1][tax_rate]": "txr_1"},
    )
    automatic = {"automatic_payment_methods[enabled]": "true"}
    deep = post(
        http,
        "/v1/setup_intents",
        {"customer": customer["id"], **automatic, "automatic_payment_methods[wallets]": "x"},
    )
    in_a_query = http.get("/v1/customers", params={"email": "a@example.com", "mail": "b"})
    retried = post(http, "/v1/subscriptions", subscription, "sub-1")

    refused = {
        "payment_method_types": top_level,
        "items[0][price_data_typo]": nested,
        "items[1][tax_rate]": in_a_list,
        "automatic_payment_methods[wallets]": deep,
        "mail": in_a_query,
    }
    for param, response in refused.items():
        assert response.status_code == 400, param
        assert response.json() == {
            "error": {
                "type": "invalid_request_error",
                "message": f"Received unknown parameter: {param}",
                "param": param,
            }
        }
    assert fake_stripe.setup_intents == {}
    # Refused upfront: nothing was created and the key was not spent.
    assert retried.status_code == 200
    assert list(fake_stripe.subscriptions) == [retried.json()["id"]]


def test_what_the_params_types_list_is_accepted_at_every_depth(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=1000)
    customer = fake_stripe.add_customer()

    created = post(
        http,
        "/v1/subscriptions",
        {
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "items[0][quantity]": "2",
            "items[0][metadata][any key]": "any value",
            "billing_mode[type]": "flexible",
            "metadata[reservation]": "7",
            "expand[0]": "latest_invoice.confirmation_secret",
        },
    )
    setup_intent = post(
        http,
        "/v1/setup_intents",
        {"customer": customer["id"], "allowed_payment_method_types[0]": "card"},
    )
    unset = post(http, f"/v1/customers/{customer['id']}", {"metadata": ""})

    assert created.status_code == 200, created.text
    assert created.json()["latest_invoice"]["confirmation_secret"]["type"] == "payment_intent"
    assert setup_intent.status_code == 200, setup_intent.text
    assert setup_intent.json()["payment_method_types"] == ["card"]
    assert unset.status_code == 200, unset.text


def _stripe_python_calls() -> dict[tuple[str, str], set[str]]:
    """(method, path as a route pattern) -> the Params types stripe-python's services send."""
    calls: dict[tuple[str, str], set[str]] = {}
    call = re.compile(
        r'params: (?:Optional\[)?"(\w+Params)".*?self\._request(?:_async)?\(\s*'
        r'"(get|post|delete)",\s*"(/v1/[^"]+)"',
        re.DOTALL,
    )
    for source in Path(stripe_python.__file__).parent.rglob("_*_service.py"):
        for params_name, method, template in call.findall(source.read_text(encoding="utf-8")):
            pattern = re.sub(r"\{\w+\}", "([^/]+)", template)
            calls.setdefault((method.upper(), pattern), set()).add(params_name)
    return calls


def test_every_route_checks_the_params_type_stripe_python_sends_on_it(
    fake_stripe: FakeStripe,  # noqa: F811
) -> None:
    calls = _stripe_python_calls()

    mismatched = {
        f"{route.method} {route.pattern.pattern}": (
            route.params_type.__name__,
            calls.get((route.method, route.pattern.pattern)),
        )
        for route in fake_stripe.routes
        if calls.get((route.method, route.pattern.pattern)) != {route.params_type.__name__}
    }

    assert len(fake_stripe.routes) > 40
    assert mismatched == {}


def test_a_route_without_a_params_type_is_a_test_kit_error(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    class FakeWithAnUncheckedRoute(FakeStripe):
        def _table(self) -> list[tuple[str, str, object, Handler]]:
            return [*super()._table(), ("GET", r"/v1/charges", None, self._get_account)]

    def list_charges(params: Params) -> StripeObject:
        return list_object("/v1/charges", [], params)

    with pytest.raises(TypeError, match=r"GET /v1/charges names no stripe\.params type"):
        FakeWithAnUncheckedRoute(now=FAKE_STRIPE_NOW)
    with pytest.raises(TypeError, match=r"GET /v1/charges names no stripe\.params type"):
        fake_stripe.add_route("GET", r"/v1/charges", dict, list_charges)

    # A test's own route is checked like the fake's.
    fake_stripe.add_route(
        "GET", r"/v1/charges", stripe_python.params.ChargeListParams, list_charges
    )
    assert http.get("/v1/charges", params={"customer": "cus_1"}).status_code == 200
    assert http.get("/v1/charges", params={"customers": "cus_1"}).status_code == 400


def test_an_unknown_id_in_any_path_is_404_resource_missing(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    routes_with_an_id = [route for route in fake_stripe.routes if route.pattern.groups]
    answers = {}
    for route in routes_with_an_id:
        # Any other `pm_...` id is a card the fake makes up on first use.
        unknown = "pm_missing" if "payment_methods" in route.pattern.pattern else "x_unknown"
        path = route.pattern.pattern.replace("([^/]+)", unknown)
        response = http.request(route.method, path)
        error = response.json()["error"]
        answers[f"{route.method} {path}"] = (response.status_code, error.get("code"), error)

    assert len(answers) > 20
    for request, (status, code, error) in answers.items():
        assert (status, code) == (404, "resource_missing"), request
        assert error["type"] == "invalid_request_error", request
        expected_param = "payment_method" if "/payment_methods/" in request else "id"
        assert error["param"] == expected_param, request
        assert error["message"].startswith("No such "), request


def _renewal_that_fails(fake: FakeStripe, http: httpx.Client) -> tuple[str, str]:
    """A subscription paid by a card that declines from its renewal on; the renewal
    finalized and Stripe's first attempt at it made. Returns (subscription, invoice)."""
    fake.add_product(id="prod_a", name="A")
    price = fake.add_price(product="prod_a", unit_amount=1000)
    customer = fake.add_customer()
    fake.add_payment_method("pm_card_visa", customer=customer["id"])
    post(
        http,
        f"/v1/customers/{customer['id']}",
        {"invoice_settings[default_payment_method]": "pm_card_visa"},
    )
    subscription = post(
        http, "/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"]}
    ).json()
    fake.card_outcomes["pm_card_visa"] = ("requires_payment_method", "insufficient_funds")
    draft = fake.renew_subscription(subscription["id"])
    fake.finalize_invoice(draft["id"])
    assert fake.collect_automatically(draft["id"]) == "failed"
    return subscription["id"], draft["id"]


def test_stripe_retries_an_invoice_on_its_own_schedule_then_cancels(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    subscription_id, invoice_id = _renewal_that_fails(fake_stripe, http)
    assert fake_stripe.subscriptions[subscription_id]["status"] == "past_due"
    attempted_at = []
    for _ in range(20):
        fake_stripe.now += 86_400
        if fake_stripe.run_stripe_retries():
            attempted_at.append(fake_stripe.now)

    first = attempted_at[0] - 3 * 86_400
    assert [moment - first for moment in attempted_at] == [3 * 86_400, 8 * 86_400, 15 * 86_400]
    assert fake_stripe.invoices[invoice_id]["attempt_count"] == 4
    assert fake_stripe.subscriptions[subscription_id]["status"] == "canceled"


def test_auto_advance_off_stops_stripes_retries_and_pay_still_works(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    subscription_id, invoice_id = _renewal_that_fails(fake_stripe, http)
    assert fake_stripe.invoices[invoice_id]["next_payment_attempt"] is not None

    updated = post(http, f"/v1/invoices/{invoice_id}", {"auto_advance": "false"}, "off-1")
    for _ in range(20):
        fake_stripe.now += 86_400
        assert fake_stripe.run_stripe_retries() == []

    assert updated.json()["auto_advance"] is False
    assert updated.json()["next_payment_attempt"] is None
    assert fake_stripe.subscriptions[subscription_id]["status"] == "past_due"
    del fake_stripe.card_outcomes["pm_card_visa"]
    paid = post(http, f"/v1/invoices/{invoice_id}/pay", {}, "pay-1")
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    assert fake_stripe.payment_attempts == [(invoice_id, "stripe_automatic"), (invoice_id, "pay")]
    assert fake_stripe.subscriptions[subscription_id]["status"] == "active"
    refused = post(http, f"/v1/invoices/{invoice_id}/mark_uncollectible", {})
    assert refused.status_code == 400


def _checkout_params(customer: str, price: str, **extra: str) -> dict[str, str]:
    return {
        "mode": "subscription",
        "customer": customer,
        "line_items[0][price]": price,
        "line_items[0][quantity]": "1",
        "subscription_data[trial_period_days]": "7",
        "subscription_data[metadata][billing_subscription_id]": "5",
        "success_url": "https://dashboard.example/ok?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://dashboard.example/cancel",
        **extra,
    }


def test_a_completed_checkout_session_creates_its_subscription(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    customer = fake_stripe.add_customer()["id"]
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=4_900)["id"]

    created = post(http, "/v1/checkout/sessions", _checkout_params(customer, price)).json()
    completed = fake_stripe.complete_checkout_session(created["id"])

    assert (created["status"], created["mode"]) == ("open", "subscription")
    assert created["url"].startswith("https://checkout.stripe.com/")
    subscription = fake_stripe.subscriptions[completed["subscription"]]
    assert [item["price"]["id"] for item in subscription["items"]["data"]] == [price]
    assert subscription["status"] == "trialing"
    assert subscription["metadata"] == {"billing_subscription_id": "5"}
    assert http.get(f"/v1/checkout/sessions/{created['id']}").json()["status"] == "complete"
    refused = http.post(f"/v1/checkout/sessions/{created['id']}/expire")
    assert refused.status_code == 400


def test_checkout_and_portal_sessions_refuse_what_stripe_or_the_fake_would_not_take(
    fake_stripe: FakeStripe,  # noqa: F811
    http: httpx.Client,
) -> None:
    customer = fake_stripe.add_customer()["id"]
    fake_stripe.add_product(id="prod_a", name="A")
    price = fake_stripe.add_price(product="prod_a", unit_amount=4_900)["id"]
    params = _checkout_params(customer, price)

    unknown = post(http, "/v1/checkout/sessions", {**params, "bogus": "1"})
    unmodeled = post(http, "/v1/checkout/sessions", {**params, "locale": "fr"})
    too_soon = post(
        http, "/v1/checkout/sessions", {**params, "expires_at": str(FAKE_STRIPE_NOW + 60)}
    )
    portal_unknown = post(http, "/v1/billing_portal/sessions", {"customer": customer, "bogus": "1"})
    portal_missing = post(http, "/v1/billing_portal/sessions", {"customer": "cus_missing"})

    assert unknown.status_code == 400
    assert "Received unknown parameter: bogus" in unknown.json()["error"]["message"]
    assert unmodeled.status_code == 400
    assert "FakeStripe does not model" in unmodeled.json()["error"]["message"]
    assert too_soon.status_code == 400
    assert too_soon.json()["error"]["param"] == "expires_at"
    assert portal_unknown.status_code == 400
    assert portal_missing.status_code == 400
    assert fake_stripe.checkout_sessions == {} and fake_stripe.portal_sessions == {}
