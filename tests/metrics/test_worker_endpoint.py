"""The worker's own `/metrics`: its counters, behind the same token as the API's."""

import socket

import httpx
import pytest

from app.core.config import Settings
from app.metrics.worker_endpoint import (
    start_worker_metrics_endpoint,
    stop_worker_metrics_endpoint,
)
from tests.conftest import make_settings

METRICS_TOKEN = "metrics-scraper-token-0123456789"


def worker_settings(**overrides: object) -> Settings:
    # Nothing here connects to the stores.
    return make_settings("postgresql://unused/unused", "redis://unused:6379/0", **overrides)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_worker_serves_its_counters_to_the_token_only(free_port: int) -> None:
    settings = worker_settings(METRICS_TOKEN=METRICS_TOKEN, WORKER_METRICS_PORT=free_port)
    endpoint = start_worker_metrics_endpoint(settings)
    url = f"http://127.0.0.1:{free_port}/metrics"
    try:
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        anonymous = httpx.get(url)
        wrong = httpx.get(url, headers={"Authorization": "Bearer guess"})
    finally:
        stop_worker_metrics_endpoint(endpoint)

    assert scraped.status_code == 200
    assert "billing_failed_payment_attempts_total" in scraped.text
    assert "billing_stripe_calls" in scraped.text
    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "overrides",
    [{"WORKER_METRICS_PORT": 9100}, {"METRICS_TOKEN": METRICS_TOKEN}],
    ids=["no token", "no port"],
)
def test_the_worker_serves_nothing_without_both_token_and_port(
    overrides: dict[str, object],
) -> None:
    assert start_worker_metrics_endpoint(worker_settings(**overrides)) is None
