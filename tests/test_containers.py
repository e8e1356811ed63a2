"""No Docker engine runs here: check the compose file as compose would read it."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_runs_api_worker_and_their_stores_with_healthchecks() -> None:
    services = _compose()["services"]

    assert set(services) == {"api", "worker", "postgres", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    assert services["worker"]["command"][:2] == ["arq", "app.worker.WorkerSettings"]
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    api_environment = services["api"]["environment"]
    assert api_environment["DATABASE_URL"].startswith("postgresql://")
    assert api_environment["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert api_environment["REDIS_URL"].endswith("@redis:6379/0")
    assert services["worker"]["environment"] == api_environment


def test_redis_requires_a_password_that_has_no_default() -> None:
    redis = _compose()["services"]["redis"]

    assert "--requirepass" in " ".join(redis["command"])
    # `${VAR:?message}`: compose refuses to start without it; there is no fallback value.
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    # The healthcheck authenticates (redis-cli reads REDISCLI_AUTH) and wants PONG, not
    # just an answer: NOAUTH would be one too.
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "PONG" in " ".join(redis["healthcheck"]["test"])


def test_the_worker_logs_arqs_lines_through_the_service() -> None:
    command = _compose()["services"]["worker"]["command"]

    assert command[command.index("--custom-log-dict") + 1] == "app.worker.log_config"


def test_image_runs_as_non_root_from_the_lock_file_and_migrates_first() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "uv sync --frozen --no-dev" in dockerfile
    assert "--extra embedded" not in dockerfile
    assert "\nUSER billing\n" in dockerfile
    command = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    assert command.index("billing migrate") < command.index("billing serve")
    # Proxies are trusted from FORWARDED_ALLOW_IPS through `billing serve`, never all.
    assert "forwarded-allow-ips" not in dockerfile


def test_env_example_lists_every_setting() -> None:
    from app.core.config import Settings

    listed = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("# ")
    }
    assert set(Settings.model_fields) <= listed
