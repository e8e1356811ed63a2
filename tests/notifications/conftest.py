from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.jobs.queue import connect_job_queue
from app.notifications.tasks import deliver_notifications, sweep_notifications
from tests.conftest import make_settings
from tests.notifications.receivers import DashboardReceiver, SmtpReceiver
from tests.running_jobs import job_ctx

DASHBOARD_SECRET = "whsec_dashboard_0123456789abcdef0123456789"


@pytest_asyncio.fixture
async def smtp_server() -> AsyncIterator[SmtpReceiver]:
    server = SmtpReceiver()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def dashboard() -> AsyncIterator[DashboardReceiver]:
    receiver = DashboardReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def delivery_settings(
    database_url: str,
    redis_url: str,
    smtp_server: SmtpReceiver,
    dashboard: DashboardReceiver,
    tmp_path: Path,
) -> Settings:
    """Both channels pointed at the local receivers."""
    return make_settings(
        database_url,
        redis_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_server.port,
        SMTP_STARTTLS=False,
        EMAIL_FROM="billing@callcenter.test",
        DASHBOARD_WEBHOOK_URL=dashboard.url,
        DASHBOARD_WEBHOOK_SECRET=DASHBOARD_SECRET,
        NOTIFICATION_OUTBOX_DIR=str(tmp_path / "outbox"),
        NOTIFICATION_MAX_ATTEMPTS=5,
    )


class Worker:
    """The worker's two notification jobs, run by hand with the test's clock."""

    def __init__(
        self,
        settings: Settings,
        clock: FrozenClock,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis_url: str,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sessionmaker = sessionmaker
        self.redis = connect_job_queue(redis_url)

    def _ctx(self) -> dict[str, object]:
        return job_ctx(
            settings=self.settings,
            clock=self.clock,
            sessionmaker=self.sessionmaker,
            redis=self.redis,
        )

    async def deliver(self, customer_id: int) -> int:
        sent: int = await deliver_notifications(self._ctx(), customer_id)
        return sent

    async def sweep(self) -> int:
        swept: int = await sweep_notifications(self._ctx())
        return swept

    async def sweep_and_run(self) -> int:
        """The sweeper, then every delivery job it queued (as the worker would)."""
        await self.sweep()
        sent = 0
        for job in await self.redis.queued_jobs():
            await self.redis.zrem(self.redis.default_queue_name, job.job_id or "")
            if job.function == "deliver_notifications":
                sent += await self.deliver(*job.args)
        return sent


@pytest_asyncio.fixture
async def worker(
    delivery_settings: Settings,
    clock: FrozenClock,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis_url: str,
) -> AsyncIterator[Worker]:
    running = Worker(delivery_settings, clock, sessionmaker, redis_url)
    yield running
    await running.redis.aclose()
