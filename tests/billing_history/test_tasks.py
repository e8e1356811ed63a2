from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history.tasks import archive_billing_records_nightly
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.models import BillingHistory, BillingHistoryArchive
from tests.conftest import TEST_NOW
from tests.factories import create_billing_row, create_customer
from tests.running_jobs import job_ctx


def _ctx(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> dict[str, Any]:
    return job_ctx(settings=settings, clock=clock, sessionmaker=sessionmaker)


async def _add_rows(session: AsyncSession) -> None:
    customer = await create_customer(session)
    for number, occurred_at in enumerate(
        [datetime(2023, 1, 1, tzinfo=UTC), TEST_NOW - timedelta(days=400)]
    ):
        await create_billing_row(
            session, customer, stripe_invoice_id=f"in_{number}", occurred_at=occurred_at
        )


async def _counts(session: AsyncSession) -> tuple[int | None, int | None]:
    return (
        await session.scalar(select(func.count()).select_from(BillingHistory)),
        await session.scalar(select(func.count()).select_from(BillingHistoryArchive)),
    )


async def test_the_nightly_archive_does_nothing_without_archive_after_days(
    settings: Settings,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    await _add_rows(session)
    assert settings.ARCHIVE_AFTER_DAYS is None

    moved = await archive_billing_records_nightly(_ctx(settings, sessionmaker, clock))

    assert moved == 0
    assert await _counts(session) == (2, 0)


async def test_the_nightly_archive_moves_rows_older_than_archive_after_days(
    settings: Settings,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    await _add_rows(session)
    configured = settings.model_copy(update={"ARCHIVE_AFTER_DAYS": 730})

    first = await archive_billing_records_nightly(_ctx(configured, sessionmaker, clock))
    second = await archive_billing_records_nightly(_ctx(configured, sessionmaker, clock))

    assert (first, second) == (1, 0)
    assert await _counts(session) == (1, 1)
