from arq.connections import ArqRedis

from app.jobs.enqueue import enqueue_job
from tests import infra


async def test_a_job_is_queued_once_per_job_id(redis_url: str) -> None:
    await infra.flush_redis_database(redis_url, release=False)
    redis = ArqRedis.from_url(redis_url)
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
    redis = ArqRedis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        assert await enqueue_job(redis, "bill_overage_charge", 7, job_id="x") is False
    finally:
        await redis.aclose()
