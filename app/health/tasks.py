"""The worker's heartbeat: a cron job writes when it last ran, `/readyz` shows it.

An operator can then tell "the API is up but nothing processes jobs" from `/readyz` alone.
"""

from datetime import datetime

from arq.connections import ArqRedis

from app.jobs.context import JobContext, job

HEARTBEAT_KEY = "billing:worker:heartbeat"
HEARTBEAT_TTL_SECONDS = 600


@job
async def record_worker_heartbeat(context: JobContext) -> str:
    now = context.clock.now().isoformat()
    await context.redis.set(HEARTBEAT_KEY, now, ex=HEARTBEAT_TTL_SECONDS)
    return now


async def read_worker_heartbeat(redis: ArqRedis) -> datetime | None:
    value = await redis.get(HEARTBEAT_KEY)
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return datetime.fromisoformat(text)
