"""`/metrics`: guarded by METRICS_TOKEN, and its metrics move with what the service does.

The process metrics are process-wide counters shared by every test, so each test compares a
scrape after with a scrape before.
"""

import copy
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.main import create_app
from app.models import Notification
from tests.conftest import TokenFactory, bearer, make_settings
from tests.factories import (
    create_customer,
    create_plan,
    create_subscription,
    subscribe_through_api,
)
from tests.stripe.fake import FakeStripe
from tests.usage.helpers import call, post_usage
from tests.webhooks.helpers import deliver, event_at, local_subscription, post_event

METRICS_TOKEN = "metrics-scraper-token-0123456789"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
API = "/subscriptions/api"


@asynccontextmanager
async def serving(settings: Settings, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    # The `app` and `client` fixtures of tests/conftest.py serve these.
    return make_settings(database_url, redis_url, METRICS_TOKEN=METRICS_TOKEN)


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def count(self, name: str, **labels: str) -> float:
        return self.value(name, **labels) or 0.0


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


async def test_metrics_do_not_exist_without_a_metrics_token(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    async with serving(make_settings(database_url, redis_url), clock) as client:
        responses = [
            await client.request(method, "/metrics", headers=SCRAPER) for method in ("GET", "POST")
        ]

    assert [response.status_code for response in responses] == [404, 404]
    assert responses[0].json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x"],
)
async def test_metrics_need_the_metrics_token(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_a_users_token_does_not_open_the_metrics(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    response = await client.get("/metrics", headers=bearer(make_token("42", roles=["service"])))

    assert response.status_code == 401


async def test_request_latency_is_labelled_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    route = f"{API}/plans/{{plan_id}}"
    before = await scrape(client)
    await client.get(f"{API}/plans/987654/")
    await client.get(f"{API}/plans/987655")
    await client.get("/no/such/path/987656")
    after = await scrape(client)

    name = "billing_http_request_duration_seconds_count"
    assert after.count(name, method="GET", route=route, status="404") == (
        before.count(name, method="GET", route=route, status="404") + 2
    )
    assert after.count(name, method="GET", route="unmatched", status="404") == (
        before.count(name, method="GET", route="unmatched", status="404") + 1
    )
    assert after.value(
        "billing_http_request_duration_seconds_bucket",
        method="GET",
        route=route,
        status="404",
        le="+Inf",
    )
    # Ids never become labels: no label value holds one (a sample's value, a duration or a
    # memory size, may contain the same digits).
    label_values = re.findall(r'="([^"]*)"', after.text)
    assert label_values
    assert not [value for value in label_values if "98765" in value]


async def test_a_429_moves_the_rate_limited_counter(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    settings = make_settings(
        database_url, redis_url, METRICS_TOKEN=METRICS_TOKEN, RATE_LIMIT_PUBLIC_PER_IP_PER_MINUTE=1
    )
    async with serving(settings, clock) as client:
        before = await scrape(client)
        statuses = [(await client.get(f"{API}/plans/")).status_code for _ in range(2)]
        after = await scrape(client)

    assert statuses == [200, 429]
    name = "billing_rate_limited_requests_total"
    assert after.count(name, limit="public_ip") == before.count(name, limit="public_ip") + 1
    assert after.count(
        "billing_http_request_duration_seconds_count",
        method="GET",
        route=f"{API}/plans",
        status="429",
    ) == (
        before.count(
            "billing_http_request_duration_seconds_count",
            method="GET",
            route=f"{API}/plans",
            status="429",
        )
        + 1
    )


async def test_stored_events_notifications_and_the_queue_are_read_at_scrape_time(
    client: httpx.AsyncClient,
    clock: FrozenClock,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    empty = await scrape(client)
    event = fake_stripe.event("customer.deleted", {"id": "cus_gone", "object": "customer"})
    assert (await post_event(client, event)).status_code == 200
    customer = await create_customer(session, dashboard_user_id="42")
    session.add_all(
        Notification(
            customer_id=customer.id,
            kind="trial_will_end",
            dedupe_key=f"notice-{n}",
            status=status,
            created_at=clock.now(),
        )
        for n, status in enumerate(["pending", "pending", "dead"])
    )
    await session.commit()
    clock.advance(timedelta(seconds=90))

    scraped = await scrape(client)

    assert empty.value("billing_stripe_events", status="pending") == 0
    assert empty.value("billing_stripe_events_oldest_pending_age_seconds") == 0
    assert empty.value("billing_arq_queue_depth") == 0
    assert scraped.value("billing_stripe_events", status="pending") == 1
    assert scraped.value("billing_stripe_events", status="processed") == 0
    assert scraped.value("billing_stripe_events_oldest_pending_age_seconds") == 90
    # Its processing job, enqueued after the delivery was stored.
    assert scraped.value("billing_arq_queue_depth") == 1
    assert {
        status: scraped.value("billing_notifications", status=status)
        for status in ("pending", "sent", "dead")
    } == {"pending": 2, "sent": 0, "dead": 1}
    assert scraped.value("billing_metrics_source_up", source="database") == 1
    assert scraped.value("billing_metrics_source_up", source="redis") == 1


async def test_a_store_that_does_not_answer_leaves_out_its_gauges_not_the_scrape(
    database_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = make_settings(
        database_url, f"redis://127.0.0.1:{closed_port}/0", METRICS_TOKEN=METRICS_TOKEN
    )
    async with serving(settings, clock) as client:
        scraped = await scrape(client)

    assert scraped.value("billing_metrics_source_up", source="redis") == 0
    assert scraped.value("billing_arq_queue_depth") is None
    assert scraped.value("billing_metrics_source_up", source="database") == 1
    assert scraped.value("billing_stripe_events", status="failed") == 0


async def test_stripe_calls_and_failed_payment_attempts_are_counted(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    before = await scrape(client)
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    invoice = copy.deepcopy(fake_stripe.invoices[stripe_subscription["latest_invoice"]])
    invoice.update(status="open", attempt_count=2)
    first = event_at(fake_stripe, "invoice.payment_failed", invoice, fake_stripe.now + 5)
    assert await deliver(client, app, first) == "processed"
    # Stripe's retry of the same attempt (a new event id): no new attempt.
    again = event_at(fake_stripe, "invoice.payment_failed", invoice, fake_stripe.now + 6)
    assert await deliver(client, app, again) == "processed"
    after = await scrape(client)

    assert (await local_subscription(session)).failed_payment_attempts == 2
    name = "billing_failed_payment_attempts_total"
    assert after.count(name) == before.count(name) + 2
    calls = "billing_stripe_calls_total"
    assert after.count(calls, outcome="success") > before.count(calls, outcome="success")


async def test_usage_alerts_raised_are_counted_by_kind(
    client: httpx.AsyncClient, session: AsyncSession, make_token: TokenFactory
) -> None:
    customer = await create_customer(session, dashboard_user_id="42")
    plan = await create_plan(session, included_minutes=100, max_agents=4)
    await create_subscription(session, customer=customer, plan=plan)
    before = await scrape(client)

    response = await post_usage(client, make_token("42"), call("a", 85))
    assert response.status_code in (200, 201), response.text
    await post_usage(client, make_token("42"), call("b", 1))  # crosses nothing new
    after = await scrape(client)

    name = "billing_usage_alerts_raised_total"
    assert after.count(name, kind="usage_threshold") == (
        before.count(name, kind="usage_threshold") + 1
    )
    assert after.count(name, kind="overage") == before.count(name, kind="overage")
