"""Running arq jobs in tests: the job context the worker would build, and the jobs queued."""

from typing import Any, cast

from arq.connections import ArqRedis
from arq.typing import WorkerCoroutine
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.jobs.context import CONTEXT_KEY, JobContext
from app.stripe_gateway.client import StripeGateway


class _NoRedis:
    """For a job that must not touch Redis: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"this job was not expected to use Redis ({name})")


def job_ctx(
    *,
    settings: Settings,
    clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    stripe_gateway: StripeGateway | None = None,
    redis: object | None = None,
) -> dict[str, Any]:
    """The arq `ctx` of a job, as the worker's startup builds it."""
    return {
        CONTEXT_KEY: JobContext(
            settings=settings,
            clock=clock,
            sessionmaker=sessionmaker,
            stripe_gateway=stripe_gateway or StripeGateway(settings),
            redis=cast(ArqRedis, redis if redis is not None else _NoRedis()),
        )
    }


def app_job_ctx(app: FastAPI, *, redis: object | None = None) -> dict[str, Any]:
    """The job context of the worker that runs beside `app` (same stores, clock, Stripe)."""
    return job_ctx(
        settings=app.state.settings,
        clock=app.state.clock,
        sessionmaker=app.state.sessionmaker,
        stripe_gateway=app.state.stripe_gateway,
        redis=redis if redis is not None else app.state.redis,
    )


async def run_queued_jobs(app: FastAPI, *functions: WorkerCoroutine) -> list[str]:
    """Run every job queued in the app's Redis once, as the worker would (each must be one of
    `functions`); returns their names in queue order."""
    by_name = {function.__qualname__: function for function in functions}
    redis: ArqRedis = app.state.redis
    ran: list[str] = []
    for queued in await redis.queued_jobs():
        await redis.zrem(redis.default_queue_name, queued.job_id or "")
        await by_name[queued.function](app_job_ctx(app), *queued.args, **queued.kwargs)
        ran.append(queued.function)
    return ran
