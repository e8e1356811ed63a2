from typing import Annotated

from arq.connections import ArqRedis
from fastapi import BackgroundTasks, Header, Request

from app.core.db import DriverPoolDep, driver_autocommit, driver_transaction
from app.core.deps import ClockDep, SettingsDep
from app.core.errors import error_responses
from app.core.routing import SlashTolerantRouter
from app.webhooks import service
from app.webhooks.errors import InvalidWebhook
from app.webhooks.schemas import WebhookAcknowledgement

router = SlashTolerantRouter(tags=["stripe webhook"])


@router.post(
    "/stripe-webhook/",
    response_model=WebhookAcknowledgement,
    responses=error_responses(InvalidWebhook),
    summary="Stripe's webhook endpoint (signed; no token)",
)
async def receive_stripe_webhook(
    request: Request,
    pool: DriverPoolDep,
    settings: SettingsDep,
    clock: ClockDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAcknowledgement:
    """Verify, store, acknowledge. Processing happens in the worker; the job is enqueued
    after the event is committed (and found by the sweeper should that fail)."""
    now = clock.now()
    row = service.verify_delivery(
        await request.body(),
        signature_header=stripe_signature,
        secrets=settings.stripe_webhook_secrets,
        now=now,
    )
    # Committed before the answer: Stripe is told 200 only for an event that is stored. The
    # request owns both transactions: a new event is one insert, atomic on its own, so it is
    # autocommitted (no BEGIN and COMMIT round trips for nearly every delivery); only an event
    # stored before takes a transaction, to decide under its row's lock.
    async with driver_autocommit(pool) as autocommit:
        received = await service.store_new_delivery(autocommit, row)
    if received is None:
        async with driver_transaction(pool) as transaction:
            received = await service.record_repeated_delivery(transaction, row, now=now)
    if received.job_attempt is not None:
        redis: ArqRedis = request.app.state.redis
        background.add_task(
            service.enqueue_processing,
            redis,
            received.stripe_event_id,
            attempt=received.job_attempt,
        )
    return WebhookAcknowledgement(duplicate=received.duplicate)
