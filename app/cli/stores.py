"""Which PostgreSQL (and Stripe) a `billing` command runs against.

In order: `DATABASE_URL` / `REDIS_URL` when set; else the stores a running `billing dev`
(`make run`) recorded in `.data/stores.json`; else an embedded PostgreSQL started for the
command's own run (data under `.data/postgres`, the one `make run` uses) and stopped after it.

The record is written by `billing dev` once its stores answer and removed when it stops. A
record left by a run that was killed is recognised (its supervisor's pid is gone, or its
PostgreSQL does not answer) and ignored, so a command never waits on a dead server.
"""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from app.core.config import Settings, to_asyncpg_url

# Local state of a checkout (`make run`'s stores, its token secret), never in the repository.
DATA_DIR = Path(".data")
STORES_FILE = DATA_DIR / "stores.json"
DEV_DATABASE_NAME = "billing"
# How long a recorded PostgreSQL may take to answer before the record is taken as stale.
ANSWER_TIMEOUT_SECONDS = 3.0


def record_stores(values: dict[str, str], *, path: Path = STORES_FILE) -> None:
    """Write what `billing dev` runs with (store URLs, the local Stripe stand-in), atomically:
    a command never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), **values}, indent=2))
    temporary.chmod(0o600)
    temporary.replace(path)


def remove_record(*, path: Path = STORES_FILE) -> None:
    """Forget the record, if it is this process's (a later `billing dev` may own it now)."""
    record = _read(path)
    if record is not None and record.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


async def _postgres_answers(url: str) -> bool:
    dsn = to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)
    try:
        connection = await asyncpg.connect(dsn, timeout=ANSWER_TIMEOUT_SECONDS)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def running_dev_stores(*, path: Path = STORES_FILE) -> dict[str, str] | None:
    """The values a live `billing dev` recorded, or None (no record, or a stale one)."""
    record = _read(path)
    if record is None:
        return None
    database_url = record.get("DATABASE_URL")
    if not _pid_alive(record.get("pid")) or not isinstance(database_url, str):
        return None
    if not await _postgres_answers(database_url):
        return None
    return {key: value for key, value in record.items() if isinstance(value, str)}


def _with_recorded(settings: Settings, recorded: dict[str, str]) -> Settings:
    update: dict[str, object] = {}
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not getattr(settings, name) and recorded.get(name):
            update[name] = recorded[name]
    # The local Stripe stand-in `billing dev` serves when no key is configured: a command
    # with no Stripe settings of its own talks to the same one as the running service.
    unconfigured = settings.STRIPE_SECRET_KEY is None and not settings.STRIPE_API_BASE
    if unconfigured and recorded.get("STRIPE_API_BASE") and recorded.get("STRIPE_SECRET_KEY"):
        update["STRIPE_API_BASE"] = recorded["STRIPE_API_BASE"]
        update["STRIPE_SECRET_KEY"] = SecretStr(recorded["STRIPE_SECRET_KEY"])
    return settings.model_copy(update=update) if update else settings


@asynccontextmanager
async def command_stores(settings: Settings) -> AsyncIterator[Settings]:
    """`settings` with the stores a command should use, started for it if need be."""
    if settings.DATABASE_URL:
        yield settings
        return
    recorded = await running_dev_stores()
    if recorded is not None:
        yield _with_recorded(settings, recorded)
        return
    # Nothing running: an embedded PostgreSQL for this command only, on `make run`'s data,
    # migrated first (a fresh clone's first command may come before any `make run`).
    from app.core.embedded import EmbeddedPostgres, create_database, database_url
    from app.core.migrations import upgrade_to_head

    with EmbeddedPostgres(DATA_DIR / "postgres") as postgres:
        server_url = await asyncio.to_thread(postgres.start)
        await create_database(server_url, DEV_DATABASE_NAME, if_missing=True)
        url = database_url(server_url, DEV_DATABASE_NAME)
        # Alembic runs its own event loop: off this one.
        await asyncio.to_thread(upgrade_to_head, to_asyncpg_url(url))
        yield settings.model_copy(update={"DATABASE_URL": url})
