"""The worker as arq runs it: jobs stored as JSON, and a request's id carried into its jobs."""

import importlib
import inspect
import json
import logging
import logging.config
from collections.abc import AsyncIterator
from typing import Any, get_type_hints

import httpx
import pytest
import pytest_asyncio
from arq.constants import job_key_prefix, result_key_prefix
from arq.worker import create_worker
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.request_logging import REQUEST_ID_HEADER
from app.main import create_app
from app.webhooks.samples import signature_header
from tests.conftest import make_settings
from tests.running_jobs import app_job_ctx
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import SECRET, WEBHOOK

JSON_VALUES = (int, str, bool, float, type(None))


@pytest.fixture
def worker_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    # arq reads the Redis address from the class, so the module reads REDIS_URL on import.
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    return importlib.import_module("app.worker").WorkerSettings


@pytest_asyncio.fixture
async def production_app(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url, redis_url, ENVIRONMENT="production"), clock)
    async with app.router.lifespan_context(app):
        yield app


async def run_one_job(worker_settings: Any, app: FastAPI) -> None:
    """arq's worker with the service's settings runs the first queued job; its context is
    the one the worker's startup builds, over the app's stores, clock and Stripe."""

    async def startup(ctx: dict[str, Any]) -> None:
        ctx.update(app_job_ctx(app, redis=ctx["redis"]))

    worker = create_worker(
        worker_settings,
        on_startup=startup,
        on_shutdown=None,
        cron_jobs=[],
        burst=True,
        max_burst_jobs=1,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# arq's Worker.close calls redis-py's deprecated close(); nothing of ours.
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_a_requests_id_follows_it_into_the_job_it_enqueued(
    production_app: FastAPI,
    worker_settings: Any,
    fake_stripe: FakeStripe,
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    payload = json.dumps(event).encode()
    transport = httpx.ASGITransport(app=production_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            WEBHOOK,
            content=payload,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": signature_header(payload, SECRET, int(event["created"])),
                REQUEST_ID_HEADER: "dash-req-1",
            },
        )
    assert response.status_code == 200
    assert response.headers[REQUEST_ID_HEADER] == "dash-req-1"

    # The job as Redis holds it: JSON (pickle would not parse), carrying the request id.
    job_id = f"{event['id']}:0"
    stored = json.loads(await production_app.state.redis.get(job_key_prefix + job_id))
    assert (stored["f"], stored["a"]) == ("process_stripe_event", [event["id"]])
    assert stored["k"] == {"log_context": {"request_id": "dash-req-1"}}

    await run_one_job(worker_settings, production_app)

    result = json.loads(await production_app.state.redis.get(result_key_prefix + job_id))
    assert (result["s"], result["r"]) == (True, "processed")
    lines = json_lines(capsys.readouterr().out)
    [request] = [line for line in lines if line["event"] == "request"]
    [received] = [line for line in lines if line["event"] == "webhook_event_received"]
    [processed] = [line for line in lines if line["event"] == "webhook_event_processed"]
    assert request["request_id"] == received["request_id"] == "dash-req-1"
    assert processed["request_id"] == "dash-req-1"
    assert (processed["job"], processed["job_id"]) == ("process_stripe_event", job_id)
    # arq's own lines are JSON lines too, and say which job they are about.
    arq_lines = [line for line in lines if line["logger"] == "arq.worker"]
    assert any(line.get("job_id") == job_id for line in arq_lines)


def test_every_job_takes_and_returns_json_values(worker_settings: Any) -> None:
    functions = [
        *worker_settings.functions,
        *(cron.coroutine for cron in worker_settings.cron_jobs),
    ]
    for function in functions:
        hints = get_type_hints(inspect.unwrap(function))
        context = next(iter(inspect.signature(inspect.unwrap(function)).parameters))
        for name, hint in hints.items():
            if name != context:
                assert hint in JSON_VALUES, f"{function.__name__}: {name} is {hint}"


def test_the_arq_cli_hands_logging_to_the_service(
    worker_settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `arq ... --custom-log-dict app.worker.log_config` does before it starts the worker.
    log_config = importlib.import_module("app.worker").log_config
    logging.config.dictConfig(log_config)
    capsys.readouterr()

    logging.getLogger("arq.worker").info("Starting worker for %d functions", 3)

    line = capsys.readouterr().out
    assert "Starting worker for 3 functions" in line
