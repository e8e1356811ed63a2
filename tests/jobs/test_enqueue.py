import structlog

from app.jobs.enqueue import enqueue_job
from app.jobs.queue import connect_job_queue
from tests import infra


async def test_a_job_is_queued_once_per_job_id(redis_url: str) -> None:
    await infra.flush_redis_database(redis_url, release=False)
    redis = connect_job_queue(redis_url)
    try:
        first = await enqueue_job(redis, "bill_overage_charge", 7, job_id="overage-charge:7:1")
        again = await enqueue_job(redis, "bill_overage_charge", 7, job_id="overage-charge:7:1")
        queued = await redis.queued_jobs()
    finally:
        await redis.aclose()
    assert (first, again) == (True, False)
    assert [(job.function, job.args) for job in queued] == [("bill_overage_charge", (7,))]


async def test_an_enqueue_with_redis_down_reports_failure_instead_of_raising() -> None:
    # Nothing listens on port 1: the caller's row stays for its sweeper.
    redis = connect_job_queue("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        assert await enqueue_job(redis, "bill_overage_charge", 7, job_id="x") is False
    finally:
        await redis.aclose()


async def test_a_job_enqueued_during_a_request_carries_its_id_and_customer(
    redis_url: str,
) -> None:
    await infra.flush_redis_database(redis_url, release=False)
    redis = connect_job_queue(redis_url)
    try:
        with structlog.contextvars.bound_contextvars(
            request_id="req-9", user_id="42", customer_id=7, path="/not/propagated"
        ):
            await enqueue_job(redis, "bill_ended_subscription_usage", 3, job_id="ended:3")
        await enqueue_job(redis, "bill_ended_subscription_usage", 4, job_id="ended:4")
        queued = {job.job_id: job.kwargs for job in await redis.queued_jobs()}
    finally:
        await redis.aclose()
    assert queued == {
        "ended:3": {"log_context": {"request_id": "req-9", "user_id": "42", "customer_id": 7}},
        # Enqueued outside a request (a cron's sweep): nothing to carry.
        "ended:4": {},
    }
