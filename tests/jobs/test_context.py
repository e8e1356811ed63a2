"""The job wrapper (`app.jobs.context.job`): the typed context, and the job's log context."""

from typing import Any

import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.jobs.context import JobContext, job
from tests.running_jobs import job_ctx


@job
async def report_log_context(context: JobContext, charge_id: int) -> dict[str, Any]:
    return {"charge_id": charge_id, **structlog.contextvars.get_contextvars()}


@pytest.fixture
def ctx(
    settings: Settings, clock: FrozenClock, sessionmaker: async_sessionmaker[AsyncSession]
) -> dict[str, Any]:
    return job_ctx(settings=settings, clock=clock, sessionmaker=sessionmaker)


async def test_a_job_logs_with_the_request_id_and_customer_it_was_enqueued_with(
    ctx: dict[str, Any],
) -> None:
    bound = await report_log_context(
        ctx, 7, log_context={"request_id": "req-9", "customer_id": 3, "password": "x"}
    )

    assert bound == {
        "charge_id": 7,
        "job": "report_log_context",
        "request_id": "req-9",
        "customer_id": 3,
    }
    # Bound while the job runs, and only then.
    assert structlog.contextvars.get_contextvars() == {}


async def test_a_job_enqueued_outside_a_request_logs_with_its_name_only(
    ctx: dict[str, Any],
) -> None:
    assert await report_log_context(ctx, 7) == {"charge_id": 7, "job": "report_log_context"}
