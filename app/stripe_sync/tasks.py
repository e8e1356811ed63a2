"""arq cron jobs of Stripe sync."""

from app.jobs.context import JobContext, job
from app.stripe_sync.reconcile import reconcile_and_alert


@job
async def reconcile_stripe_nightly(context: JobContext) -> int:
    """arq cron job: `reconcile_and_alert`; returns the number of differences."""
    report = await reconcile_and_alert(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        max_attempts=context.settings.WEBHOOK_MAX_ATTEMPTS,
    )
    return len(report.remaining)
