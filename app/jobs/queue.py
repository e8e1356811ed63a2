"""The job queue's Redis connection, and how jobs and their results are stored: as JSON.

arq pickles by default. Unpickling runs code, so whoever can write to Redis could run code in
the worker; and a pickled argument can be any Python object, which a job then depends on.
JSON keeps a job's arguments to what a row's id or a string can say (dates as ISO strings),
and both ends must agree: the worker (`app.worker.WorkerSettings`) and every connection that
enqueues (the API's, and the tests') use the pair below.
"""

import json
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from uuid import uuid4

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job, serialize_job
from arq.utils import timestamp_ms, to_ms, to_unix_ms
from redis.commands.core import AsyncScript


def _describe_exception(value: object) -> str:
    # A failed job's result is the exception arq caught; its text is what is kept.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"a job's arguments and result must be JSON values, not {type(value)}")


def dump_job(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: a job (or its result) as compact JSON."""
    return json.dumps(data, default=_describe_exception, separators=(",", ":")).encode()


def load_job(raw: bytes) -> dict[str, Any]:
    """arq's `job_deserializer`."""
    data: dict[str, Any] = json.loads(raw)
    # arq hands a job's positional arguments around as a tuple; JSON knows only lists.
    if isinstance(data.get("a"), list):
        data["a"] = tuple(data["a"])
    return data


# arq's enqueue in one atomic step: refused while the job or its result is kept, else the
# job stored with its expiry and put on the queue. arq does the same in three round trips
# (WATCH, EXISTS, then MULTI/EXEC), a fifth of the webhook acknowledgement's CPU.
_ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
    return 0
end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


class JobQueue(ArqRedis):
    """arq's connection, whose `enqueue_job` is one Redis round trip instead of three; what
    it stores (the job's key, its expiry, the queue's entry) is exactly arq's."""

    async def enqueue_job(
        self,
        function: str,
        *args: Any,
        _job_id: str | None = None,
        _queue_name: str | None = None,
        _defer_until: datetime | None = None,
        _defer_by: int | float | timedelta | None = None,
        _expires: int | float | timedelta | None = None,
        _job_try: int | None = None,
        **kwargs: Any,
    ) -> Job | None:
        job_id = _job_id or uuid4().hex
        if _defer_until and _defer_by:
            raise RuntimeError("use either 'defer_until' or 'defer_by' or neither, not both")
        queue_name = _queue_name or self.default_queue_name
        enqueue_time_ms = timestamp_ms()
        if _defer_until is not None:
            score = to_unix_ms(_defer_until)
        else:
            score = enqueue_time_ms + (to_ms(_defer_by) or 0)
        expires_ms = to_ms(_expires) or score - enqueue_time_ms + self.expires_extra_ms
        job = serialize_job(
            function, args, kwargs, _job_try, enqueue_time_ms, serializer=self.job_serializer
        )
        queued = await self._enqueue_script(
            keys=[job_key_prefix + job_id, result_key_prefix + job_id, queue_name],
            args=[expires_ms, job, score, job_id],
        )
        if not queued:
            return None
        return Job(job_id, redis=self, _queue_name=queue_name, _deserializer=self.job_deserializer)

    @cached_property
    def _enqueue_script(self) -> AsyncScript:
        # EVALSHA, and the script's text only when this Redis has not seen it yet.
        return self.register_script(_ENQUEUE_SCRIPT)


def connect_job_queue(url: str, **options: Any) -> ArqRedis:
    """A connection to enqueue jobs on (connects lazily); `options` go to redis-py."""
    redis: ArqRedis = JobQueue.from_url(url, **options)
    # Set after construction: `from_url` hands its keyword arguments to the connection pool.
    redis.job_serializer = dump_job
    redis.job_deserializer = load_job
    return redis
