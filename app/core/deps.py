"""Dependencies on what the app holds for its lifetime: settings, the clock, Redis."""

import uuid
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request

from app.core.clock import Clock
from app.core.config import Settings


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_redis(request: Request) -> ArqRedis:
    redis: ArqRedis = request.app.state.redis
    return redis


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
# Where jobs are enqueued after the commit that made them necessary (`app.jobs.enqueue`).
RedisDep = Annotated[ArqRedis, Depends(get_redis)]


async def get_attempt_token() -> str:
    """One request's own part of the Stripe idempotency keys of changes that are safe to
    repeat (setting a default card, paying an open invoice, moving an item to a price it may
    already have, toggling cancellation).

    Such a change must not reuse an earlier request's key: Stripe replays the first answer of
    a key for 24 hours, a saved 500 or decline included, so cancel, reactivate, cancel again
    (or a retry after a new card) would silently do nothing. A client's repeated request is
    answered from the Idempotency-Key store before it gets here; what does reach Stripe twice
    finds the change already made. Creations (customers, subscriptions, prices) keep keys made
    of our ids and content instead.
    """
    return uuid.uuid4().hex[:24]


AttemptTokenDep = Annotated[str, Depends(get_attempt_token)]
