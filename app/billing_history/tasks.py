"""arq jobs of billing history: the nightly archive run."""

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history.archive import archive_billing_records
from app.core.clock import Clock
from app.core.config import Settings

logger = structlog.get_logger(__name__)


async def archive_billing_records_nightly(ctx: dict[str, Any]) -> int:
    """Archive the settled rows older than ARCHIVE_AFTER_DAYS; nothing when it is unset.
    Returns the number of rows moved."""
    settings: Settings = ctx["settings"]
    if settings.ARCHIVE_AFTER_DAYS is None:
        return 0
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    clock: Clock = ctx["clock"]
    run = await archive_billing_records(
        sessionmaker, clock=clock, older_than_days=settings.ARCHIVE_AFTER_DAYS
    )
    assert run.after is not None
    counts = {
        "cutoff": run.cutoff.isoformat(),
        "moved": run.moved,
        "batches": run.batches,
        "hot_before": run.before.hot,
        "archived_before": run.before.archived,
        "hot_after": run.after.hot,
        "archived_after": run.after.archived,
    }
    if run.totals_match:
        logger.info("billing_records_archived", **counts)
    else:
        # Something besides this run removed or added rows among the counted ids (a refund
        # running total replaced by itemized refunds, say): worth an operator's look.
        logger.error(
            "billing_records_archive_totals_differ",
            total_before=run.before.total,
            total_after=run.after.total,
            **counts,
        )
    return run.moved
