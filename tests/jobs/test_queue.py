"""Jobs and their results stored as JSON (`app.jobs.queue`)."""

import json
from datetime import UTC, datetime

import pytest
from arq.constants import job_key_prefix
from arq.jobs import SerializationError, serialize_result

from app.jobs.enqueue import enqueue_job
from app.jobs.queue import connect_job_queue, dump_job, load_job
from tests import infra


async def test_a_job_is_stored_as_json_and_read_back_as_arq_expects(redis_url: str) -> None:
    await infra.flush_redis_database(redis_url, release=False)
    redis = connect_job_queue(redis_url)
    try:
        await enqueue_job(redis, "bill_overage_charge", 7, job_id="overage-charge:7:1")
        raw = await redis.get(job_key_prefix + "overage-charge:7:1")
        [queued] = await redis.queued_jobs()
    finally:
        await redis.aclose()
    assert json.loads(raw)["a"] == [7]
    assert (queued.function, queued.args) == ("bill_overage_charge", (7,))


async def test_an_argument_json_cannot_hold_is_refused_when_enqueued(redis_url: str) -> None:
    redis = connect_job_queue(redis_url)
    try:
        with pytest.raises(SerializationError):
            await enqueue_job(redis, "bill_overage_charge", datetime.now(UTC), job_id="when")
    finally:
        await redis.aclose()


def test_a_failed_jobs_result_keeps_the_error_as_text() -> None:
    stored = serialize_result(
        "bill_overage_charge",
        (7,),
        {},
        1,
        0,
        False,
        RuntimeError("Stripe said no"),
        0,
        1,
        "ref",
        "arq:queue",
        "job-1",
        serializer=dump_job,
    )

    assert stored is not None
    assert load_job(stored)["r"] == "RuntimeError: Stripe said no"
