"""The job queue's Redis connection, and how jobs and their results are stored: as JSON.

arq pickles by default. Unpickling runs code, so whoever can write to Redis could run code in
the worker; and a pickled argument can be any Python object, which a job then depends on.
JSON keeps a job's arguments to what a row's id or a string can say (dates as ISO strings),
and both ends must agree: the worker (`app.worker.WorkerSettings`) and every connection that
enqueues (the API's, and the tests') use the pair below.
"""

import json
from typing import Any

from arq.connections import ArqRedis


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


def connect_job_queue(url: str, **options: Any) -> ArqRedis:
    """A connection to enqueue jobs on (connects lazily); `options` go to redis-py."""
    redis: ArqRedis = ArqRedis.from_url(url, **options)
    # Set after construction: `from_url` hands its keyword arguments to the connection pool.
    redis.job_serializer = dump_job
    redis.job_deserializer = load_job
    return redis
