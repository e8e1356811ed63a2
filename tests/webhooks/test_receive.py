"""The endpoint: verify, store once, answer at once; refuse anything not from Stripe."""

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import StripeEvent
from app.webhooks import handlers
from app.webhooks.samples import signature_header
from tests.lost_connections import answer_lost_once, kill_pooled_connections
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import WEBHOOK, post_event, run_worker


async def _stored(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(StripeEvent)) or 0)


async def _queued_event_ids(app: FastAPI) -> list[str]:
    return [job.args[0] for job in await app.state.redis.queued_jobs()]


async def test_a_signed_event_is_stored_and_acknowledged(
    client: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer(email="a@acme.test"))

    response = await post_event(client, event)
    without_slash = await client.post(
        WEBHOOK.rstrip("/"),
        content=json.dumps(event).encode(),
        headers={
            "Stripe-Signature": signature_header(
                json.dumps(event).encode(), "whsec_test", event["created"]
            )
        },
        follow_redirects=False,
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    assert without_slash.status_code == 200 and without_slash.json()["duplicate"] is True
    stored = await session.scalar(select(StripeEvent))
    assert stored is not None
    assert (stored.stripe_event_id, stored.type, stored.status) == (
        event["id"],
        "customer.deleted",
        "pending",
    )
    assert stored.object_id == event["data"]["object"]["id"]


async def test_the_same_event_ten_times_at_once_is_stored_once(
    client: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())

    responses = await asyncio.gather(*(post_event(client, event) for _ in range(10)))

    assert {response.status_code for response in responses} == {200}
    assert sum(not response.json()["duplicate"] for response in responses) == 1
    assert await _stored(session) == 1


async def test_a_secret_being_rotated_and_its_successor_are_both_accepted(
    database_url: str,
    redis_url: str,
    clock: FrozenClock,
    engine: object,
    fake_stripe: FakeStripe,
) -> None:
    from app.main import create_app
    from tests.conftest import make_settings

    app = create_app(
        make_settings(database_url, redis_url, STRIPE_WEBHOOK_SECRET="whsec_old,whsec_new"), clock
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        old = await post_event(
            client,
            fake_stripe.event("customer.deleted", {"id": "cus_1", "object": "customer"}),
            secret="whsec_old",
        )
        new = await post_event(
            client,
            fake_stripe.event("customer.deleted", {"id": "cus_2", "object": "customer"}),
            secret="whsec_new",
        )
        other = await post_event(
            client,
            fake_stripe.event("customer.deleted", {"id": "cus_3", "object": "customer"}),
            secret="whsec_other",
        )

    assert (old.status_code, new.status_code, other.status_code) == (200, 200, 400)


async def test_anything_not_signed_by_stripe_is_400_and_stores_nothing(
    client: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    body = json.dumps(event).encode()
    now = event["created"]

    cases = {
        "bad signature": await client.post(
            WEBHOOK, content=body, headers={"Stripe-Signature": f"t={now},v1={'0' * 64}"}
        ),
        "stale timestamp": await post_event(client, event, timestamp=now - 3600),
        "missing header": await client.post(WEBHOOK, content=body),
        "empty body": await client.post(
            WEBHOOK,
            content=b"",
            headers={"Stripe-Signature": signature_header(b"", "whsec_test", now)},
        ),
        "malformed json": await client.post(
            WEBHOOK,
            content=b"{not json",
            headers={"Stripe-Signature": signature_header(b"{not json", "whsec_test", now)},
        ),
    }

    for name, response in cases.items():
        assert response.status_code == 400, name
        assert response.json()["error"]["code"] == "invalid_webhook", name
    assert await _stored(session) == 0


async def test_a_body_over_one_megabyte_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        WEBHOOK,
        content=b"{" + b" " * (1024 * 1024) + b"}",
        headers={"Stripe-Signature": "t=1,v1=0"},
    )
    assert response.status_code == 413


def _signed_header_parts(body: bytes, signed_at: int) -> tuple[str, str]:
    header = signature_header(body, "whsec_test", signed_at)
    timestamp, signature = header.split(",")
    return timestamp, signature


async def test_a_captured_old_delivery_is_refused_however_its_header_is_reworded(
    client: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe, clock: FrozenClock
) -> None:
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    body = json.dumps(event).encode()
    now = int(clock.now().timestamp())
    # Signed by Stripe two hours ago and captured; the attacker cannot sign, but can reword.
    old_t, old_v1 = _signed_header_parts(body, now - 7200)

    rewordings = {
        "a fresh t before the signed one": f"t={now},{old_t},{old_v1}",
        "a fresh t after the signed one": f"{old_t},t={now},{old_v1}",
        "a spaced fresh t before the signed one": f" t={now},{old_t},{old_v1}",
        "a t with a sign": f"t=+{now - 7200},{old_v1}",
        "a t with a digit separator": f"t={now - 7200:_},{old_v1}",
        "a t in other digits": "t="
        + str(now - 7200).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
        + f",{old_v1}",
        "no t at all": old_v1,
    }

    for name, header in rewordings.items():
        response = await client.post(
            WEBHOOK, content=body, headers={b"Stripe-Signature": header.encode()}
        )
        assert response.status_code == 400, name
        assert response.json()["error"]["code"] == "invalid_webhook", name
    assert await _stored(session) == 0


async def test_a_delivery_replayed_within_its_five_minutes_never_reruns_a_failed_event(
    client: httpx.AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(session: AsyncSession, context: handlers.EventContext) -> None:
        raise RuntimeError("bug")

    monkeypatch.setitem(handlers.HANDLERS, "customer.deleted", broken)
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    signed_at = int(event["created"])
    await post_event(client, event, timestamp=signed_at)
    assert (await run_worker(app, event["id"], max_attempts=1)).outcome == "failed"

    # The same delivery, byte for byte, sent again: acknowledged, and the event stays failed.
    replayed = await post_event(client, event, timestamp=signed_at)
    stored = await session.scalar(select(StripeEvent))
    assert stored is not None
    assert replayed.status_code == 200 and replayed.json()["duplicate"] is True
    assert stored.status == "failed"

    # Stripe's own redelivery is signed afresh: that one makes the event pending again.
    redelivered = await post_event(client, event, timestamp=signed_at + 60)
    await session.refresh(stored)
    assert redelivered.status_code == 200
    assert stored.status == "pending"


async def test_an_unsigned_delivery_is_refused_before_a_connection_is_taken(
    database_url: str, redis_url: str, clock: FrozenClock, fake_stripe: FakeStripe
) -> None:
    from app.main import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(database_url, redis_url), clock)
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        # A pool that has no connection to give: a forged flood must not wait for one.
        await app.state.driver_pool.close()
        forged = await post_event(client, event, secret="whsec_forged")

    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == "invalid_webhook"


async def test_a_delivery_after_the_pooled_connections_died_is_stored_and_queued(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    first = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    assert (await post_event(client, first)).status_code == 200
    await kill_pooled_connections(session)

    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    response = await post_event(client, event)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    assert await _stored(session) == 2
    assert event["id"] in await _queued_event_ids(app)


async def test_a_delivery_whose_answer_was_lost_after_its_insert_is_still_processed(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())

    # The insert commits, its connection dies before the answer: sent again on another, it
    # finds its own row, so the delivery reads as a repeat of itself.
    with answer_lost_once(monkeypatch, "INSERT INTO stripe_events") as lost:
        response = await post_event(client, event)

    assert lost
    assert response.status_code == 200, response.text
    assert await _stored(session) == 1
    # Its job is queued all the same, not left for the sweeper.
    assert await _queued_event_ids(app) == [event["id"]]
    assert (await run_worker(app, event["id"])).outcome == "processed"


async def test_a_replayed_delivery_queues_nothing_more(
    app: FastAPI, client: httpx.AsyncClient, fake_stripe: FakeStripe
) -> None:
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    assert (await post_event(client, event)).status_code == 200
    queued = await app.state.redis.queued_jobs()

    replayed = await post_event(client, event)
    assert (await run_worker(app, event["id"])).outcome == "processed"
    after_processing = await post_event(client, event)

    assert replayed.json()["duplicate"] is True
    assert after_processing.json()["duplicate"] is True
    assert len(queued) == 1
    assert len(await app.state.redis.queued_jobs()) == 1
