"""Log lines: JSON in production for structlog's and the standard library's loggers alike,
and never a secret."""

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from app.core.config import Settings
from app.core.logging import REDACTED, configure_logging
from tests.conftest import TEST_JWT_SECRET


def production_settings() -> Settings:
    return Settings(_env_file=None, ENVIRONMENT="production", JWT_SECRET=TEST_JWT_SECRET)


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line printed must be one JSON object: that is the production format."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture
def production_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    configure_logging(production_settings())
    capsys.readouterr()
    yield
    structlog.contextvars.clear_contextvars()


def test_a_line_with_secret_keys_is_redacted_at_any_depth(
    production_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    structlog.get_logger("app.test").info(
        "payment_method_attached",
        authorization="Bearer eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo0Mn0.c2lnbmF0dXJl",
        password="hunter2",
        client_secret="seti_1_secret_abc",
        card={"number": "4242424242424242", "cvc": "123", "exp_month": 12},
        request={"headers": {"Authorization": "Bearer abc", "Accept": "application/json"}},
        access_token="token-value",
        payment_method_id="pm_card_visa",
    )

    [line] = json_lines(capsys.readouterr().out)
    assert line["event"] == "payment_method_attached"
    for key in ("authorization", "password", "client_secret", "card", "access_token"):
        assert line[key] == REDACTED, key
    assert line["request"]["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["payment_method_id"] == "pm_card_visa"
    for secret in ("eyJ", "hunter2", "seti_1_secret_abc", "4242", "Bearer abc", "token-value"):
        assert secret not in json.dumps(line), secret


def test_secrets_written_into_text_are_redacted(
    production_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger("some.library").warning(
        "retrying with Authorization: Bearer abc.def and key sk_live_51Habc and whsec_xyz"
    )

    [line] = json_lines(capsys.readouterr().out)
    assert "abc.def" not in line["event"]
    assert "sk_live_51Habc" not in line["event"]
    assert "whsec_xyz" not in line["event"]
    assert line["event"].count(REDACTED) == 3


def test_standard_library_lines_are_json_with_the_bound_context(
    production_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1", customer_id=7)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)

    [line] = json_lines(capsys.readouterr().out)
    assert line["event"] == "Started server process [42]"
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "info"
    assert (line["request_id"], line["customer_id"]) == ("req-1", 7)
    assert "timestamp" in line


def test_a_servers_own_handler_is_replaced_so_each_event_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What arq's CLI (and uvicorn's dictConfig) do before the app configures logging.
    arq_logger = logging.getLogger("arq")
    arq_logger.addHandler(logging.StreamHandler())
    arq_logger.propagate = False

    configure_logging(production_settings())
    capsys.readouterr()
    logging.getLogger("arq.worker").info("Starting worker for %d functions", 3)

    captured = capsys.readouterr()
    [line] = json_lines(captured.out)
    assert line["event"] == "Starting worker for 3 functions"
    assert captured.err == ""


def test_an_exception_is_one_json_line_with_its_traceback(
    production_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("app.test").exception("unhandled_error")

    [line] = json_lines(capsys.readouterr().out)
    assert line["level"] == "error"
    assert "RuntimeError: boom" in line["exception"]


def test_configuring_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(production_settings())
    configure_logging(production_settings())
    capsys.readouterr()

    structlog.get_logger("app.test").info("once")

    assert len(json_lines(capsys.readouterr().out)) == 1
