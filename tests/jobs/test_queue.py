"""Jobs and their results stored as JSON (`app.jobs.queue`)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
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


async def test_an_enqueue_stores_what_arqs_own_enqueue_stores(redis_url: str) -> None:
    await infra.flush_redis_database(redis_url, release=False)
    ours = connect_job_queue(redis_url)
    arqs = ArqRedis.from_url(redis_url)
    arqs.job_serializer, arqs.job_deserializer = dump_job, load_job
    try:
        for redis, job_id in ((ours, "ours"), (arqs, "arqs")):
            await redis.enqueue_job(
                "bill_overage_charge", 7, _job_id=job_id, _defer_by=timedelta(minutes=5), x=1
            )
        stored = {
            job_id: (
                json.loads(await ours.get(job_key_prefix + job_id)),
                await ours.pttl(job_key_prefix + job_id),
                await ours.zscore(default_queue_name, job_id),
            )
            for job_id in ("ours", "arqs")
        }
        queued = {job.job_id: job for job in await ours.queued_jobs()}
    finally:
        await ours.aclose()
        await arqs.aclose()
        # Nothing left queued for a worker of a later test to pick up.
        await infra.flush_redis_database(redis_url, release=False)
    (our_job, our_ttl, our_score), (arq_job, arq_ttl, arq_score) = stored["ours"], stored["arqs"]
    assert {**our_job, "et": 0} == {**arq_job, "et": 0}
    assert our_job["k"] == {"x": 1}
    # Deferred by 5 minutes and kept for a day more, on either (a few ms apart).
    assert abs(our_score - arq_score) < 5_000 and abs(our_ttl - arq_ttl) < 5_000
    assert our_score - our_job["et"] == 5 * 60 * 1000
    assert our_ttl > 24 * 3600 * 1000
    assert (queued["ours"].function, queued["ours"].args) == ("bill_overage_charge", (7,))


async def test_an_id_is_refused_while_its_job_or_its_result_is_kept(redis_url: str) -> None:
    await infra.flush_redis_database(redis_url, release=False)
    redis = connect_job_queue(redis_url)
    try:
        first = await redis.enqueue_job("bill_overage_charge", 7, _job_id="queued")
        again = await redis.enqueue_job("bill_overage_charge", 7, _job_id="queued")
        await redis.set(result_key_prefix + "finished", b"{}")
        after_result = await redis.enqueue_job("bill_overage_charge", 7, _job_id="finished")
        queued = [job.job_id for job in await redis.queued_jobs()]
    finally:
        await redis.aclose()
        await infra.flush_redis_database(redis_url, release=False)
    assert first is not None and first.job_id == "queued"
    assert again is None and after_result is None
    assert queued == ["queued"]
