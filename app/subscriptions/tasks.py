"""arq jobs and crons of the subscriptions domain: dunning's payment retries."""

from app.jobs.context import JobContext, job
from app.jobs.enqueue import RUN_PAYMENT_RETRY, enqueue_job
from app.subscriptions import lifecycle_notices, payment_retries


@job
async def run_payment_retry(context: JobContext, retry_id: int) -> str:
    """Run one dunning retry (enqueued by the sweeper, or right after a new default card)."""
    return await payment_retries.run_retry(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        retry_id=retry_id,
    )


@job
async def retry_payment_with_new_card(context: JobContext, customer_id: int) -> str:
    """A new default card while in dunning: a retry at once (enqueued by payment methods
    after its commit; should Redis lose it, the scheduled retries still run)."""
    return await payment_retries.retry_with_new_card(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        customer_id=customer_id,
    )


@job
async def sweep_dunning(context: JobContext) -> int:
    """Cron, every minute: dunning's housekeeping (`dunning.sweep`), then every retry due
    (or lost by a dead worker) enqueued; returns how many. A job id per sweep: the rows, not
    arq, keep a retry from running twice."""
    result = await payment_retries.sweep(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        settings=context.settings,
    )
    stamp = int(context.clock.now().timestamp())
    for retry_id in result.due_retry_ids:
        await enqueue_job(
            context.redis, RUN_PAYMENT_RETRY, retry_id, job_id=f"payment-retry:{retry_id}:{stamp}"
        )
    return len(result.due_retry_ids)


@job
async def remind_trials_ending(context: JobContext) -> int:
    """Cron, hourly: the trial reminder for trials ending within three days that Stripe's
    `customer.subscription.trial_will_end` has not announced (one reminder per trial either
    way: the same key)."""
    return await lifecycle_notices.remind_trials_ending(
        sessionmaker=context.sessionmaker, clock=context.clock
    )
