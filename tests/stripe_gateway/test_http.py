"""Each call to Stripe is logged with Stripe's request id (`app.stripe_gateway.http`)."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from app.core.config import Settings
from app.core.logging import configure_logging
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.errors import StripeUnavailable
from tests.conftest import TEST_JWT_SECRET
from tests.stripe.fake import FakeStripe


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    configure_logging(
        Settings(_env_file=None, ENVIRONMENT="production", JWT_SECRET=TEST_JWT_SECRET)
    )
    capsys.readouterr()
    with structlog.contextvars.bound_contextvars(request_id="dash-1", customer_id=7):
        yield


def logged(output: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line]
    return [line for line in lines if line["event"] == event]


async def test_a_call_is_logged_with_stripes_request_id_and_ours(
    gateway: StripeGateway,
    fake: FakeStripe,
    json_logs: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    customer = fake.add_customer(email="ada@example.com")

    await gateway.default_payment_method_id(customer_id=customer["id"])

    [line] = logged(capsys.readouterr().out, "stripe_request")
    assert line["stripe_request_id"].startswith("req_")
    assert (line["method"], line["path"], line["status"]) == (
        "GET",
        f"/v1/customers/{customer['id']}",
        200,
    )
    assert (line["request_id"], line["customer_id"]) == ("dash-1", 7)


async def test_a_failed_call_is_logged_with_stripes_request_id(
    gateway: StripeGateway,
    fake: FakeStripe,
    json_logs: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    customer = fake.add_customer(email="ada@example.com")
    fake.fail_next("GET", "/v1/customers/", status=500)

    with pytest.raises(StripeUnavailable):
        await gateway.default_payment_method_id(customer_id=customer["id"])

    output = capsys.readouterr().out
    [call] = logged(output, "stripe_request")
    [failure] = logged(output, "stripe_unavailable")
    assert call["status"] == 500
    assert failure["stripe_request_id"] == call["stripe_request_id"]
    assert failure["request_id"] == "dash-1"
