"""arq jobs of the notifications domain: one customer's deliveries, and the sweeper that
starts them.

The sweeper (every ten seconds) is what starts delivery: it finds every customer with a
delivery due, whether just committed, due for a retry, never enqueued or lost with Redis, or
claimed by a worker that died. A failed delivery also enqueues the customer's next run for
when its retry is due, so a retry does not wait for a sweep. The rows are the truth; jobs
only carry the customer id, and the row claims keep two runs from sending one thing twice."""

from datetime import timedelta

from app.jobs.context import JobContext, job
from app.jobs.enqueue import enqueue_job
from app.notifications import delivery
from app.notifications.channels import Channel, DashboardChannel, EmailChannel

DELIVER_NOTIFICATIONS = "deliver_notifications"


def channels_for(context: JobContext) -> list[Channel]:
    return [EmailChannel(context.settings), DashboardChannel(context.settings)]


@job
async def deliver_notifications(context: JobContext, customer_id: int) -> int:
    """Send what is due for one customer, in order; returns how many were sent."""
    run = await delivery.deliver_for_customer(
        sessionmaker=context.sessionmaker,
        clock=context.clock,
        channels=channels_for(context),
        customer_id=customer_id,
        max_attempts=context.settings.NOTIFICATION_MAX_ATTEMPTS,
    )
    if run.next_due_at is not None:
        wait = max(run.next_due_at - context.clock.now(), timedelta(0))
        await enqueue_job(
            context.redis,
            DELIVER_NOTIFICATIONS,
            customer_id,
            job_id=f"deliver-notifications:{customer_id}:{int(run.next_due_at.timestamp())}",
            defer=wait,
        )
    return run.sent


@job
async def sweep_notifications(context: JobContext) -> int:
    """Cron: a delivery run enqueued for each customer with something due; returns how many.
    A job id per customer and sweep: a run still queued from this second is not doubled."""
    now = context.clock.now()
    customers = await delivery.customers_due(context.sessionmaker, now=now)
    for customer_id in customers:
        await enqueue_job(
            context.redis,
            DELIVER_NOTIFICATIONS,
            customer_id,
            job_id=f"deliver-notifications:{customer_id}:{int(now.timestamp())}",
        )
    return len(customers)
