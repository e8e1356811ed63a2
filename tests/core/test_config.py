from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.cli import app as cli
from app.core.config import ConfigurationError, Settings
from app.invoices.branding import default_branding
from tests.invoices.helpers import png_logo


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_defaults_keep_the_original_modules_names_and_values() -> None:
    settings = _settings()
    assert settings.TRIAL_PERIOD_DAYS == 14
    assert settings.GRACE_PERIOD_DAYS == 3
    assert settings.MAX_PAYMENT_RETRIES == 3
    assert settings.STRIPE_LIVE_MODE is False
    assert settings.BILLING_CURRENCY == "usd"
    assert settings.CORS_ALLOWED_ORIGINS == []
    assert settings.USAGE_ALERT_THRESHOLDS == [80, 100]
    assert settings.JWT_LEEWAY_SECONDS == 30


def test_lists_are_read_from_comma_separated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "https://app.example.com/, https://b.example.com")
    monkeypatch.setenv("USAGE_ALERT_THRESHOLDS", "100,50,80")
    settings = _settings()
    assert settings.CORS_ALLOWED_ORIGINS == ["https://app.example.com", "https://b.example.com"]
    assert settings.USAGE_ALERT_THRESHOLDS == [50, 80, 100]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_LIVE_MODE": False}, "live key"),
        ({"STRIPE_PUBLISHABLE_KEY": "pk_live_abc"}, "live key"),
        ({"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_LIVE_MODE": True}, "test key"),
        ({"ENVIRONMENT": "production"}, "JWT_SECRET"),
        ({"ENVIRONMENT": "production", "JWT_SECRET": "your_jwt_secret_here_0123456789abcd"}, "JWT"),
        ({"ENVIRONMENT": "production", "JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"ENVIRONMENT": "production", "JWT_ALGORITHM": "RS256"}, "JWT_PUBLIC_KEY"),
        (
            {
                "ENVIRONMENT": "production",
                "JWT_SECRET": "x7Hq2vN9pL4rT8wK1mZ5cB3dF6gJ0sYe",
                "STRIPE_SECRET_KEY": "sk_test_your_secret_key",
            },
            "STRIPE_SECRET_KEY is a placeholder",
        ),
        (
            {
                "DASHBOARD_WEBHOOK_URL": "ftp://dashboard.test/hook",
                "DASHBOARD_WEBHOOK_SECRET": "whsec_0123456789abcdef0123456789abcdef",
            },
            "DASHBOARD_WEBHOOK_URL must be an http:// or https:// URL",
        ),
        ({"DASHBOARD_WEBHOOK_URL": "https://dashboard.test/hook"}, "DASHBOARD_WEBHOOK_SECRET"),
        (
            {
                "ENVIRONMENT": "production",
                "JWT_SECRET": "x7Hq2vN9pL4rT8wK1mZ5cB3dF6gJ0sYe",
                "DASHBOARD_WEBHOOK_URL": "https://dashboard.test/hook",
                "DASHBOARD_WEBHOOK_SECRET": "too-short-a-secret",
            },
            "DASHBOARD_WEBHOOK_SECRET must be a real secret of 32+ characters",
        ),
        (
            {
                "ENVIRONMENT": "production",
                "JWT_SECRET": "x7Hq2vN9pL4rT8wK1mZ5cB3dF6gJ0sYe",
                "CONSOLE_SESSION_SECRET": "short-console-key",
            },
            "CONSOLE_SESSION_SECRET must be a real secret of 32+ characters",
        ),
    ],
)
def test_start_up_refuses_dangerous_configuration(
    values: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir("/")  # no .env file

    from typer.testing import CliRunner

    result = CliRunner().invoke(cli, ["issue-token", "--user-id", "1"])

    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("configuration error:")
    assert message in lines[0]
    secret = str(values.get("STRIPE_SECRET_KEY", values.get("JWT_SECRET", "")))
    assert not secret or secret not in lines[0]
    assert str(values.get("DASHBOARD_WEBHOOK_SECRET", "-")) not in lines[0]
    assert str(values.get("CONSOLE_SESSION_SECRET", "-")) not in lines[0]


def test_email_settings_are_read_under_the_issue_names_and_the_earlier_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = _settings()
    assert (defaults.SMTP_STARTTLS, defaults.EMAIL_FROM) == (True, "billing@localhost")
    assert Path(".data/outbox") == defaults.NOTIFICATION_OUTBOX_DIR
    monkeypatch.setenv("SMTP_USE_TLS", "false")
    monkeypatch.setenv("SMTP_FROM_EMAIL", "billing@acme.test")
    earlier = _settings()
    assert (earlier.SMTP_STARTTLS, earlier.EMAIL_FROM) == (False, "billing@acme.test")
    monkeypatch.setenv("SMTP_STARTTLS", "true")
    monkeypatch.setenv("EMAIL_FROM", "invoices@acme.test")
    named = _settings()
    assert (named.SMTP_STARTTLS, named.EMAIL_FROM) == (True, "invoices@acme.test")


def test_production_accepts_a_real_secret() -> None:
    settings = _settings(ENVIRONMENT="production", JWT_SECRET="x7Hq2vN9pL4rT8wK1mZ5cB3dF6gJ0sYe")
    assert settings.ENVIRONMENT == "production"


def test_invoice_branding_settings_are_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOICE_SELLER_ADDRESS", "1 Main Street| Springfield, IL 62701 |")
    monkeypatch.setenv("INVOICE_PRIMARY_COLOR", "#ABC")
    monkeypatch.setenv("INVOICE_LOCALE", "de_DE")
    settings = _settings()
    assert settings.INVOICE_SELLER_ADDRESS == ["1 Main Street", "Springfield, IL 62701"]
    assert settings.INVOICE_PRIMARY_COLOR == "#aabbcc"
    assert settings.INVOICE_LOCALE == "de_DE"
    for name, value in (
        ("INVOICE_PRIMARY_COLOR", "blue"),
        ("INVOICE_NUMBER_PREFIX", "no spaces"),
        ("INVOICE_LOCALE", "xx_nowhere"),
    ):
        with pytest.raises(ValidationError, match=name):
            _settings(**{name: value})


def test_a_seller_logo_that_fails_the_checks_stops_the_start(tmp_path: Path) -> None:
    script = tmp_path / "logo.svg"
    script.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>')
    good = tmp_path / "logo.png"
    good.write_bytes(png_logo())

    assert default_branding(_settings(INVOICE_LOGO_PATH=good)).logo is not None
    for path, message in (
        (script, "script"),
        (tmp_path / "missing.png", "cannot be read"),
        (tmp_path / "logo.gif", ".png or .svg"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            default_branding(_settings(INVOICE_LOGO_PATH=path))


def test_archive_after_days_is_unset_by_default_and_a_positive_number_of_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _settings().ARCHIVE_AFTER_DAYS is None
    monkeypatch.setenv("ARCHIVE_AFTER_DAYS", "730")
    assert _settings().ARCHIVE_AFTER_DAYS == 730
    for refused in ("0", "-30", "730d", "1000000"):
        monkeypatch.setenv("ARCHIVE_AFTER_DAYS", refused)
        with pytest.raises(ValueError, match="ARCHIVE_AFTER_DAYS"):
            _settings()


def test_payment_retries_default_to_a_spread_over_the_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    day = timedelta(days=1)
    assert _settings().payment_retry_offsets == [day, 2 * day, 3 * day]
    monkeypatch.setenv("GRACE_PERIOD_DAYS", "0.01")  # about 14 minutes, for a staging system
    monkeypatch.setenv("MAX_PAYMENT_RETRIES", "2")
    staging = _settings()
    assert staging.grace_period == timedelta(minutes=14.4)
    assert staging.payment_retry_offsets == [timedelta(minutes=7.2), timedelta(minutes=14.4)]
    monkeypatch.setenv("PAYMENT_RETRY_DELAYS", "30m, 2h,1.5d")
    assert _settings().payment_retry_offsets == [timedelta(minutes=30), timedelta(hours=2)]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"PAYMENT_RETRY_DELAYS": "-1d,2d,3d"}, "not a duration"),
        ({"PAYMENT_RETRY_DELAYS": "0d,2d,3d"}, "must be positive"),
        ({"PAYMENT_RETRY_DELAYS": "2d,1d,3d"}, "longer than the one before"),
        ({"PAYMENT_RETRY_DELAYS": "1d,2d"}, "2 delays for MAX_PAYMENT_RETRIES=3"),
        ({"GRACE_PERIOD_DAYS": "-1"}, "GRACE_PERIOD_DAYS"),
        ({"GRACE_PERIOD_DAYS": "0"}, "needs PAYMENT_RETRY_DELAYS"),
        ({"DUNNING_FINAL_ACTION": "delete"}, "DUNNING_FINAL_ACTION"),
    ],
)
def test_start_up_refuses_dunning_settings_that_make_no_sense(
    values: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir("/")  # no .env file

    from typer.testing import CliRunner

    result = CliRunner().invoke(cli, ["issue-token", "--user-id", "1"])

    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("configuration error:") and message in lines[0], lines[0]
