import pytest

from app.cli import app as cli
from app.core.config import Settings


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


def test_production_accepts_a_real_secret() -> None:
    settings = _settings(ENVIRONMENT="production", JWT_SECRET="x7Hq2vN9pL4rT8wK1mZ5cB3dF6gJ0sYe")
    assert settings.ENVIRONMENT == "production"


def test_archive_after_days_is_unset_by_default_and_a_positive_number_of_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _settings().ARCHIVE_AFTER_DAYS is None
    monkeypatch.setenv("ARCHIVE_AFTER_DAYS", "730")
    assert _settings().ARCHIVE_AFTER_DAYS == 730
    for refused in ("0", "-30", "730d"):
        monkeypatch.setenv("ARCHIVE_AFTER_DAYS", refused)
        with pytest.raises(ValueError, match="ARCHIVE_AFTER_DAYS"):
            _settings()
