"""The typed context of a job, and the one way a job opens its transaction.

arq hands each job a dict; the worker's startup puts one `JobContext` in it, and every job
function is wrapped by `job`, which passes that context on instead of the dict, so no job
unpacks `ctx` by hand. The wrapper also binds the job's log context: its name, and the
request id and customer of the request that enqueued it (`app.jobs.enqueue`).
"""

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog
from arq.connections import ArqRedis
from arq.typing import WorkerCoroutine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.core.logging import PROPAGATED_KEYS
from app.stripe_gateway.client import StripeGateway

CONTEXT_KEY = "job_context"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class JobContext:
    settings: Settings
    clock: Clock
    sessionmaker: async_sessionmaker[AsyncSession]
    stripe_gateway: StripeGateway
    redis: ArqRedis

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends and rolls back on an
        error: a job owns its transaction the way a request does. Open one per unit of work
        and never across a Stripe call."""
        async with self.sessionmaker.begin() as session:
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only (nothing is committed)."""
        async with self.sessionmaker() as session:
            yield session


def job_context(ctx: dict[str, Any]) -> JobContext:
    context = ctx[CONTEXT_KEY]
    assert isinstance(context, JobContext)
    return context


def job(function: Callable[Concatenate[JobContext, P], Awaitable[R]]) -> WorkerCoroutine:
    """An arq job function taking the typed context. `functools.wraps` keeps the name,
    which is the job's name in arq."""

    @functools.wraps(function)
    async def run(
        ctx: dict[Any, Any], *args: Any, log_context: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        inherited = {
            key: value for key, value in (log_context or {}).items() if key in PROPAGATED_KEYS
        }
        with structlog.contextvars.bound_contextvars(job=function.__name__, **inherited):
            return await function(job_context(ctx), *args, **kwargs)

    return run


async def bind_job_log_context(ctx: dict[Any, Any]) -> None:
    """arq's `on_job_start`: runs in the job's own task before arq logs the start, so arq's
    lines about the job (start, result, failure) carry its id too."""
    structlog.contextvars.bind_contextvars(job_id=ctx.get("job_id"), job_try=ctx.get("job_try"))
