import asyncio

import pytest
from typer.testing import CliRunner, Result

from app.cli import app as cli
from app.core.config import Settings


async def invoke(*arguments: str) -> Result:
    # The commands run their own event loop, as from a shell: keep it off the test's loop.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(arguments))


@pytest.fixture
def environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    assert settings.JWT_SECRET is not None
    monkeypatch.setenv("JWT_SECRET", settings.JWT_SECRET.get_secret_value())
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    return settings
