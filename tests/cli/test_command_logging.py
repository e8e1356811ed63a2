"""A `billing` command's output is its report; log lines go to stderr, problems only."""

import json

import pytest
import structlog

from app.core.config import Settings
from app.core.logging import configure_logging
from tests.cli.conftest import invoke
from tests.conftest import TEST_JWT_SECRET
from tests.stripe.fake import FakeStripe


async def test_a_commands_stripe_calls_stay_out_of_its_report(
    environment: Settings, monkeypatch: pytest.MonkeyPatch, fake_stripe: FakeStripe
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_123")
    # As the API would have left it: every Stripe call logged at INFO on stdout.
    configure_logging(environment)

    result = await invoke("check-stripe")

    assert result.exit_code == 0, result.output
    assert fake_stripe.requests
    assert "stripe_request" not in result.output
    assert result.stdout.startswith("key mode: test")


def test_a_commands_warnings_are_logged_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(_env_file=None, ENVIRONMENT="production", JWT_SECRET=TEST_JWT_SECRET)
    configure_logging(settings, for_command=True)
    logger = structlog.get_logger("app.cli.test")

    logger.info("stripe_request", stripe_request_id="req_1")
    logger.warning("stripe_unavailable", stripe_request_id="req_2")

    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = [json.loads(line) for line in captured.err.splitlines()]
    assert (line["event"], line["stripe_request_id"]) == ("stripe_unavailable", "req_2")
