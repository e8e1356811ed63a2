"""Enqueueing jobs by name, after the commit that made them necessary.

A domain that must trigger work of a higher layer (an immediate cancel bills the last
usage period) enqueues the job by its name here instead of importing that layer. Every
such job has a row or a state that a sweeper or cron finds again, so an enqueue that fails
(Redis down) delays the work and never loses it: enqueueing is best effort by design.

A job enqueued while a request runs (or another job) carries that request's id and customer
as its `log_context` keyword; `app.jobs.context.job` binds them while the job runs, so the
request's log lines and its jobs' lines share one request id.
"""

from datetime import timedelta
from typing import Any, Final

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from app.core.logging import propagated_log_context

logger = structlog.get_logger(__name__)

# The names of the jobs enqueued from outside their own domain. The functions carry the
# same names (arq's job name is the function's name); the worker registers them.
BILL_ENDED_SUBSCRIPTION_USAGE: Final = "bill_ended_subscription_usage"
RUN_PAYMENT_RETRY: Final = "run_payment_retry"
RETRY_PAYMENT_WITH_NEW_CARD: Final = "retry_payment_with_new_card"


async def enqueue_job(
    redis: ArqRedis,
    name: str,
    *args: object,
    job_id: str,
    defer: timedelta | None = None,
) -> bool:
    """True when the job was queued. A fixed `job_id` makes a repeated enqueue of the same
    work a no-op while arq still holds the first (False then, as when Redis is down)."""
    log_context = propagated_log_context()
    trace: dict[str, Any] = {"log_context": log_context} if log_context else {}
    try:
        queued = await redis.enqueue_job(name, *args, _job_id=job_id, _defer_by=defer, **trace)
    except (RedisError, OSError, TimeoutError) as error:
        logger.warning("job_enqueue_failed", job=name, job_id=job_id, error=str(error))
        return False
    if queued is None:
        logger.info("job_enqueue_refused", job=name, job_id=job_id)
        return False
    return True
