"""arq jobs of billing history: the nightly archive run."""

import structlog

from app.billing_history.archive import archive_billing_records
from app.jobs.context import JobContext, job

logger = structlog.get_logger(__name__)


@job
async def archive_billing_records_nightly(context: JobContext) -> int:
    """Archive the settled rows older than ARCHIVE_AFTER_DAYS; nothing when it is unset.
    Returns the number of rows moved."""
    older_than_days = context.settings.ARCHIVE_AFTER_DAYS
    if older_than_days is None:
        return 0
    run = await archive_billing_records(
        context.sessionmaker, clock=context.clock, older_than_days=older_than_days
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
