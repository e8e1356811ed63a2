"""`Idempotency-Key` on POST requests, through the API: a retry gets the first answer back."""

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription
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
