import pytest

from app.core.config import Settings


@pytest.fixture
def environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The environment a `billing` command run beside the test app reads."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    assert settings.JWT_SECRET is not None
    monkeypatch.setenv("JWT_SECRET", settings.JWT_SECRET.get_secret_value())
    return settings
