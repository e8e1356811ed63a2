"""`Idempotency-Key` on POST requests, through the API: a retry gets the first answer back."""

import asyncio
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import IdempotencyKey, Subscription
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_plan
from tests.stripe.fake import FakeStripe

SUBSCRIBE = "/subscriptions/api/subscribe/"


async def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}
    headers = {**bearer(make_token("42")), "Idempotency-Key": "subscribe-42-a"}

    first = await client.post(SUBSCRIBE, json=body, headers=headers)
    replay = await client.post(SUBSCRIBE, json=body, headers=headers)
    other_body = await client.post(
        SUBSCRIBE, json={**body, "billing_cycle": "yearly"}, headers=headers
    )

    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert len(fake_stripe.subscriptions) == 1


async def test_same_idempotency_key_twice_at_once_has_one_effect(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}
    headers = {**bearer(make_token("42")), "Idempotency-Key": "subscribe-42-b"}

    responses = await asyncio.gather(
        client.post(SUBSCRIBE, json=body, headers=headers),
        client.post(SUBSCRIBE, json=body, headers=headers),
    )

    codes = sorted(response.status_code for response in responses)
    assert codes in ([200, 200], [200, 409])
    if codes == [200, 409]:
        [conflict] = [r for r in responses if r.status_code == 409]
        assert conflict.json()["error"]["code"] == "request_in_progress"
    assert len(fake_stripe.subscriptions) == 1
    assert await session.scalar(select(func.count()).select_from(Subscription)) == 1


async def _stored_keys(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0)


async def test_a_path_of_any_length_or_content_with_a_key_is_a_4xx(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    headers = {**bearer(make_token("42")), "Idempotency-Key": "k-1"}

    long_path = await client.post("/subscriptions/api/" + "a" * 5000 + "/", headers=headers)
    nul_path = await client.post("/subscriptions/api/usage%00/", headers=headers)

    assert long_path.status_code == 404, long_path.text
    assert nul_path.status_code == 404, nul_path.text
    assert long_path.json()["success"] is False


async def test_a_streamed_body_over_the_limit_with_a_key_is_413_and_claims_nothing(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the size is only known as the body arrives.
        for _ in range(20):
            yield b" " * 65_536

    response = await client.post(
        "/subscriptions/api/usage/",
        content=chunks(),
        headers={**bearer(make_token("42")), "Idempotency-Key": "k-2"},
    )

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await _stored_keys(session) == 0


async def test_a_key_that_is_not_printable_ascii_is_422(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    authorization = bearer(make_token("42"))["Authorization"].encode()
    for key in ("", "k" * 256, "ключ"):
        response = await client.post(
            "/subscriptions/api/usage/",
            json={},
            headers={b"Authorization": authorization, b"Idempotency-Key": key.encode()},
        )
        assert response.status_code == 422, key
        assert response.json()["error"]["code"] == "idempotency_key_invalid"


async def test_one_key_on_two_paths_or_queries_is_two_requests(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    headers = {**bearer(make_token("42")), "Idempotency-Key": "shared-key"}
    alerts = "/subscriptions/api/alerts/999/acknowledge/"

    first = await client.post(alerts, headers=headers)
    other_path = await client.post("/subscriptions/api/alerts/998/acknowledge/", headers=headers)
    other_query = await client.post(alerts + "?customer_id=42", headers=headers)
    replay = await client.post(alerts, headers=headers)

    assert first.status_code == other_path.status_code == other_query.status_code == 404
    for response in (first, other_path, other_query):
        assert "Idempotent-Replayed" not in response.headers
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await _stored_keys(session) == 3
