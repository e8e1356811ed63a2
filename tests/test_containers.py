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
    assert services["worker"]["command"] == ["arq", "app.worker.WorkerSettings"]
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    api_environment = services["api"]["environment"]
    assert api_environment["DATABASE_URL"].startswith("postgresql://")
    assert api_environment["REDIS_URL"].startswith("redis://redis:")
    assert services["worker"]["environment"] == api_environment


def test_image_runs_as_non_root_from_the_lock_file_and_migrates_first() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "uv sync --frozen --no-dev" in dockerfile
    assert "--extra embedded" not in dockerfile
    assert "\nUSER billing\n" in dockerfile
    command = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    assert command.index("billing migrate") < command.index("uvicorn app.main:app")


def test_env_example_lists_every_setting() -> None:
    from app.core.config import Settings

    listed = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("# ")
    }
    assert set(Settings.model_fields) <= listed
