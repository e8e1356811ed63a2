"""Every route of the app, called by each of two customers with the other's ids.

The routes are enumerated from the app, so a new route is swept as soon as it is mounted, and
one this sweep does not know how to call fails it until it gets an entry below. For each:
- a public route (catalog, webhook, health, docs) answers without a token;
- an admin route is 401 without a token and 403 with a customer's or a service's token;
- any other route is 401 without a token, and with a customer's token:
  - naming the other customer's object (a card, an alert, an invoice, their dashboard user
    id) is 404, never 403 and never 200;
  - without an object to name, it answers about the caller only: nothing of the other's
    (card ids, invoice numbers, call ids...) is in the answer;
- and nothing changes: the same rows in every table, and no write sent to Stripe.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.main import API_PREFIX
from app.models import Base
from tests.conftest import TokenFactory, bearer
from tests.populated_accounts import (
    Catalog,
    PopulatedAccount,
    create_catalog,
    populate_account,
    store_webhook_event,
)
from tests.stripe.fake import FakeStripe

NEWCOMER_USER_ID = "44"
# Stripe calls that are POSTs but change nothing.
STRIPE_READS_BY_POST = {"/v1/invoices/create_preview"}


@dataclass(frozen=True)
class Parties:
    """Who calls (`actor`) and whose objects the call names (`other`)."""

    actor: PopulatedAccount
    other: PopulatedAccount
    catalog: Catalog
    stripe_event_id: str
    # A customer with an account and a Stripe customer but no subscription: the one who can
    # get past "already subscribed" to the payment-method check of subscribe/.
    newcomer_headers: dict[str, str]


@dataclass(frozen=True)
class Call:
    path_params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    params: dict[str, Any] | None = None
    # Whose token: the actor's, or the newcomer's.
    as_newcomer: bool = False


Route = tuple[str, str]  # (method, path without its trailing slash)
Expectation = Callable[[httpx.Response, Parties], None]


def _api(path: str) -> str:
    return f"{API_PREFIX}{path}".rstrip("/")


def _not_found(response: httpx.Response, parties: Parties) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"], response.text


def _batch_record_not_found(response: httpx.Response, parties: Parties) -> None:
    # A batch answers each record on its own: the one naming another customer is refused
    # with the code POST usage/ answers with its 404.
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["status"] in {"invalid", "conflict"}, result
    assert result["error"]["code"] == "customer_not_found", result


# Routes anyone may call: the catalog, Stripe's webhook (signed, no token), health, docs.
PUBLIC: dict[Route, Callable[[Parties], Call]] = {
    ("GET", "/healthz"): lambda p: Call(),
    ("GET", "/readyz"): lambda p: Call(),
    ("GET", "/openapi.json"): lambda p: Call(),
    ("GET", "/docs"): lambda p: Call(),
    ("GET", "/docs/oauth2-redirect"): lambda p: Call(),
    ("GET", "/redoc"): lambda p: Call(),
    # A redirect to the operator console, whose own sign-in is tested in tests/console.
    ("GET", "/admin"): lambda p: Call(),
    ("GET", _api("/plans/")): lambda p: Call(),
    ("GET", _api("/plans/{plan_id}/")): lambda p: Call({"plan_id": p.catalog.plan_id}),
    ("POST", _api("/stripe-webhook/")): lambda p: Call(json={"id": "evt_unsigned"}),
}

# Admin routes, called with valid bodies naming the other customer, so that only the role
# check stands between the caller and a change.
ADMIN: dict[Route, Callable[[Parties], Call]] = {
    ("GET", _api("/admin/plans/")): lambda p: Call(),
    ("POST", _api("/admin/plans/")): lambda p: Call(
        json={
            "slug": "sweep",
            "name": "Sweep",
            "monthly_price": 100,
            "yearly_price": 1_000,
            "included_minutes": 10,
            "max_agents": 1,
        }
    ),
    ("PATCH", _api("/admin/plans/{plan_id}/")): lambda p: Call(
        {"plan_id": p.catalog.plan_id}, json={"name": "Renamed"}
    ),
    ("POST", _api("/admin/plans/{plan_id}/deactivate/")): lambda p: Call(
        {"plan_id": p.catalog.plan_id}
    ),
    ("GET", _api("/admin/add-ons/")): lambda p: Call(),
    ("POST", _api("/admin/add-ons/")): lambda p: Call(
        json={"slug": "sweep", "name": "Sweep", "monthly_price": 100, "yearly_price": 1_000}
    ),
    ("PATCH", _api("/admin/add-ons/{add_on_id}/")): lambda p: Call(
        {"add_on_id": p.catalog.add_on_id}, json={"name": "Renamed"}
    ),
    ("POST", _api("/admin/add-ons/{add_on_id}/deactivate/")): lambda p: Call(
        {"add_on_id": p.catalog.add_on_id}
    ),
    ("POST", _api("/admin/customers/{customer_id}/suspension/")): lambda p: Call(
        {"customer_id": p.other.user_id}, json={"reason": "sweep"}
    ),
    ("DELETE", _api("/admin/customers/{customer_id}/suspension/")): lambda p: Call(
        {"customer_id": p.other.user_id}
    ),
    ("GET", _api("/admin/customers/{customer_id}/branding/")): lambda p: Call(
        {"customer_id": p.other.user_id}
    ),
    ("PUT", _api("/admin/customers/{customer_id}/branding/")): lambda p: Call(
        {"customer_id": p.other.user_id}, json={"company_name": "Taken Over Inc"}
    ),
    ("DELETE", _api("/admin/customers/{customer_id}/branding/")): lambda p: Call(
        {"customer_id": p.other.user_id}
    ),
    ("GET", _api("/admin/webhook-events/")): lambda p: Call(),
    ("GET", _api("/admin/dunning/")): lambda p: Call(),
    ("POST", _api("/admin/dunning/{subscription_id}/retry/")): lambda p: Call(
        {"subscription_id": p.other.subscription_id}
    ),
    ("POST", _api("/admin/webhook-events/{stripe_event_id}/replay/")): lambda p: Call(
        {"stripe_event_id": p.stripe_event_id}
    ),
    ("GET", _api("/admin/notifications/")): lambda p: Call(),
    # Any id: the role is checked before the notification is looked up.
    ("POST", _api("/admin/notifications/{notification_id}/resend/")): lambda p: Call(
        {"notification_id": 1}
    ),
}

# Customer routes that name an object: called with each of the other customer's.
OTHERS_OBJECT: dict[Route, tuple[Callable[[Parties], list[Call]], Expectation]] = {
    ("POST", _api("/subscribe/")): (
        lambda p: [
            Call(
                json={"plan_id": p.catalog.plan_id, "payment_method_id": card},
                as_newcomer=True,
            )
            for card in p.other.payment_method_ids
        ],
        _not_found,
    ),
    ("POST", _api("/payment-methods/")): (
        lambda p: [Call(json={"payment_method_id": card}) for card in p.other.payment_method_ids],
        _not_found,
    ),
    ("POST", _api("/payment-methods/{payment_method_id}/default/")): (
        lambda p: [Call({"payment_method_id": card}) for card in p.other.payment_method_ids],
        _not_found,
    ),
    ("DELETE", _api("/payment-methods/{payment_method_id}/")): (
        # The default card of a live subscription included: a 404, not "last card" 409.
        lambda p: [Call({"payment_method_id": card}) for card in p.other.payment_method_ids],
        _not_found,
    ),
    ("GET", _api("/billing-history/{record_id}/pdf/")): (
        # A refund too: a 404, not the 409 "not an invoice" that would confirm it exists.
        lambda p: [
            Call({"record_id": record})
            for record in (p.other.invoice_record_id, p.other.refund_record_id)
        ],
        _not_found,
    ),
    ("POST", _api("/usage/")): (
        lambda p: [
            Call(json={"customer_id": p.other.user_id, "call_id": "sweep-1", "minutes_used": "1"}),
            # The other's call id under the other's id: not a duplicate that shows their call.
            Call(
                json={
                    "customer_id": p.other.user_id,
                    "call_id": p.other.call_ids[0],
                    "minutes_used": "800",
                }
            ),
        ],
        _not_found,
    ),
    ("POST", _api("/usage/batch/")): (
        lambda p: [
            Call(
                json={
                    "records": [
                        {"customer_id": p.other.user_id, "call_id": "sweep-2", "minutes_used": "1"}
                    ]
                }
            )
        ],
        _batch_record_not_found,
    ),
    ("GET", _api("/usage/")): (
        lambda p: [Call(params={"customer_id": p.other.user_id})],
        _not_found,
    ),
    ("GET", _api("/entitlements/")): (
        lambda p: [Call(params={"customer_id": p.other.user_id})],
        _not_found,
    ),
    ("GET", _api("/alerts/")): (
        lambda p: [Call(params={"customer_id": p.other.user_id})],
        _not_found,
    ),
    ("POST", _api("/alerts/{alert_id}/acknowledge/")): (
        lambda p: [Call({"alert_id": alert}) for alert in p.other.alert_ids],
        _not_found,
    ),
}

# Customer routes without an object to name: they answer about the caller only. The calls
# are ones that change nothing (a manage action with nothing to act on).
OWN_SCOPE: dict[Route, Callable[[Parties], Call]] = {
    ("GET", _api("/account/")): lambda p: Call(),
    ("GET", _api("/manage/")): lambda p: Call(),
    ("POST", _api("/manage/")): lambda p: Call(json={"action": "cancel_pending_change"}),
    ("GET", _api("/manage/preview/")): lambda p: Call(
        params={"plan_id": p.catalog.upgrade_plan_id}
    ),
    ("GET", _api("/payment-methods/")): lambda p: Call(),
    ("GET", _api("/billing-history/")): lambda p: Call(params={"include_archived": "true"}),
    ("POST", _api("/payment-methods/setup-intent/")): lambda p: Call(),
    # The caller is subscribed: refused (409) before anything is reserved or sent to Stripe.
    ("POST", _api("/checkout-session/")): lambda p: Call(json={"plan_id": p.catalog.plan_id}),
    ("POST", _api("/billing-portal/")): lambda p: Call(),
}
# Of those, the ones that create something on Stripe: for the caller's Stripe customer only.
WRITES_FOR_THE_CALLER = {
    ("POST", _api("/payment-methods/setup-intent/")),
    ("POST", _api("/billing-portal/")),
}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, the twin without a slash included."""
    found = []
    for route in iter_route_contexts(app.routes):
        assert route.path is not None, route
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append((method, route.path))
    return found


# Table names come from our own metadata.
_TABLE_DIGEST = (
    "SELECT '{name}', coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')"
    ' FROM "{name}" t'
)


def _others_markers(other: PopulatedAccount) -> list[str]:
    """Strings that appear only in the other customer's data."""
    return [
        *other.payment_method_ids,
        *other.call_ids,
        f"INV-{other.user_id}",
        f"re_{other.user_id}",
        f"user{other.user_id}@example.com",
        f"Customer {other.user_id} Ltd",
        other.stripe_invoice_id,
        other.stripe_customer_id,
    ]


async def _table_digests(session: AsyncSession) -> dict[str, str]:
    """Each table's rows, as one digest per table (one round trip)."""
    digests = " UNION ALL ".join(
        _TABLE_DIGEST.format(name=table.name) for table in Base.metadata.sorted_tables
    )
    rows = await session.execute(text(digests))
    return {name: digest for name, digest in rows}


@dataclass
class Sweeper:
    client: httpx.AsyncClient
    session: AsyncSession
    fake_stripe: FakeStripe
    service_headers: dict[str, str]
    swept: list[Route] = field(default_factory=list)

    async def send(
        self, method: str, path: str, call: Call, headers: dict[str, str] | None
    ) -> httpx.Response:
        url = path.format(**call.path_params)
        return await self.client.request(
            method, url, json=call.json, params=call.params, headers=headers or {}
        )

    async def sweep(self, method: str, path: str, both_ways: tuple[Parties, Parties]) -> None:
        route = (method, path.rstrip("/") or path)
        before = await _table_digests(self.session)
        stripe_requests_before = len(self.fake_stripe.requests)
        if route in PUBLIC:
            for parties in both_ways:
                response = await self.send(method, path, PUBLIC[route](parties), None)
                assert response.status_code not in {401, 403}, (route, response.text)
                assert response.status_code < 500, (route, response.text)
            # A public call may write (the webhook stores a signed event): not checked below.
            self.swept.append(route)
            return
        if route in ADMIN:
            for parties in both_ways:
                call = ADMIN[route](parties)
                await self._expect_401_without_token(method, path, call)
                for headers in (parties.actor.headers, self.service_headers):
                    response = await self.send(method, path, call, headers)
                    assert response.status_code == 403, (route, response.text)
                    assert response.json()["error"]["code"] == "forbidden"
        elif route in OTHERS_OBJECT:
            make_calls, expect = OTHERS_OBJECT[route]
            for parties in both_ways:
                for call in make_calls(parties):
                    await self._expect_401_without_token(method, path, call)
                    headers = (
                        parties.newcomer_headers if call.as_newcomer else parties.actor.headers
                    )
                    response = await self.send(method, path, call, headers)
                    expect(response, parties)
                    self._assert_nothing_of_the_other(route, response, parties)
        elif route in OWN_SCOPE:
            for parties in both_ways:
                call = OWN_SCOPE[route](parties)
                await self._expect_401_without_token(method, path, call)
                response = await self.send(method, path, call, parties.actor.headers)
                assert response.status_code < 500, (route, response.text)
                assert response.status_code not in {401, 403, 404}, (route, response.text)
                self._assert_nothing_of_the_other(route, response, parties)
        else:
            raise AssertionError(
                f"The access sweep does not know how to call {method} {path}: add it to "
                "PUBLIC, ADMIN, OTHERS_OBJECT or OWN_SCOPE in this module"
            )
        after = await _table_digests(self.session)
        changed = sorted(name for name in before if before[name] != after[name])
        assert not changed, f"{method} {path} changed {changed}"
        callers = {parties.actor.stripe_customer_id for parties in both_ways}
        writes = [
            f"{request.method} {request.path} {request.params}"
            for request in self.fake_stripe.requests[stripe_requests_before:]
            if request.method != "GET"
            and request.path not in STRIPE_READS_BY_POST
            and not (route in WRITES_FOR_THE_CALLER and request.params.get("customer") in callers)
        ]
        assert not writes, f"{method} {path} wrote to Stripe: {writes}"
        self.swept.append(route)

    async def _expect_401_without_token(self, method: str, path: str, call: Call) -> None:
        response = await self.send(method, path, call, None)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"

    def _assert_nothing_of_the_other(
        self, route: Route, response: httpx.Response, parties: Parties
    ) -> None:
        leaked = [marker for marker in _others_markers(parties.other) if marker in response.text]
        assert not leaked, f"{route} showed {parties.other.user_id}'s {leaked}: {response.text}"


@pytest_asyncio.fixture
async def two_customers(
    client: httpx.AsyncClient,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    make_token: TokenFactory,
) -> tuple[Parties, Parties]:
    catalog = await create_catalog(session, fake_stripe)
    first = await populate_account(
        client, session, fake_stripe, make_token, catalog=catalog, user_id="42"
    )
    second = await populate_account(
        client, session, fake_stripe, make_token, catalog=catalog, user_id="43"
    )
    stripe_event_id = await store_webhook_event(client, fake_stripe)
    newcomer = bearer(make_token(NEWCOMER_USER_ID, email="newcomer@example.com"))
    # Its account and Stripe customer exist before the sweep, so its refused subscribe/
    # changes nothing either.
    setup = await client.post("/subscriptions/api/payment-methods/setup-intent/", headers=newcomer)
    assert setup.status_code == 200, setup.text
    return (
        Parties(first, second, catalog, stripe_event_id, newcomer),
        Parties(second, first, catalog, stripe_event_id, newcomer),
    )


async def test_every_route_keeps_each_customer_to_their_own_data(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    make_token: TokenFactory,
    two_customers: tuple[Parties, Parties],
    run_summary: dict[str, str],
) -> None:
    sweeper = Sweeper(client, session, fake_stripe, bearer(make_token("9001", roles=["service"])))
    routes = _routes(app)

    for method, path in routes:
        await sweeper.sweep(method, path, two_customers)

    assert len(sweeper.swept) == len(routes)
    # Every entry of the tables names a route the app serves.
    known = {*PUBLIC, *ADMIN, *OTHERS_OBJECT, *OWN_SCOPE}
    assert known <= set(sweeper.swept), known - set(sweeper.swept)
    run_summary["access sweep"] = f"{len(routes)} routes swept"
