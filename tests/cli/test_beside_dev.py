"""`billing` commands in a second terminal find the stores of a running `billing dev` (what
`make run` runs), and a record left by a run that died is not trusted."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli.stores import record_stores, running_dev_stores
from app.core.embedded import create_database, database_url, drop_database
from tests import infra
from tests.conftest import TEST_JWT_SECRET

# The settings a newcomer's shell does not have: the commands must find the stores without them.
UNSET_IN_A_NEW_TERMINAL = ("DATABASE_URL", "REDIS_URL", "STRIPE_SECRET_KEY", "STRIPE_API_BASE")
START_DEADLINE_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _terminal_environment(**values: str) -> dict[str, str]:
    environment = {
        name: value for name, value in os.environ.items() if name not in UNSET_IN_A_NEW_TERMINAL
    }
    return {**environment, "JWT_SECRET": TEST_JWT_SECRET, "LOG_LEVEL": "WARNING", **values}


def billing(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "app.cli", *arguments],
        cwd=cwd,
        env=_terminal_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def dev_stores(database_server_url: str, redis_server_url: str) -> Iterator[tuple[str, str]]:
    """A database and a Redis database of their own: `billing dev` migrates and seeds its
    stores and runs a worker, which must not touch the suite's."""
    name = infra.unique_database_name()
    asyncio.run(create_database(database_server_url, name))
    redis_url = asyncio.run(infra.claim_redis_database(redis_server_url))
    try:
        yield database_url(database_server_url, name), redis_url
    finally:
        asyncio.run(infra.flush_redis_database(redis_url, release=True))
        asyncio.run(drop_database(database_server_url, name))


@pytest.fixture
def running_dev(dev_stores: tuple[str, str], tmp_path: Path) -> Iterator[Path]:
    """`billing dev` running in `tmp_path` (its .data/ there), with no Stripe key: it serves
    the test kit's fake Stripe over HTTP. Yields the directory once the stores are recorded."""
    database, redis = dev_stores
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dev"],
        cwd=tmp_path,
        env=_terminal_environment(DATABASE_URL=database, REDIS_URL=redis, PORT=str(_free_port())),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    record = tmp_path / ".data" / "stores.json"
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not record.exists():
            assert process.poll() is None, "billing dev exited before recording its stores"
            assert time.monotonic() < deadline, "billing dev did not record its stores in time"
            time.sleep(0.1)
        yield tmp_path
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert not record.exists(), "a clean stop removes the record"


def test_commands_in_another_terminal_use_the_stores_of_a_running_dev(running_dev: Path) -> None:
    recorded = json.loads((running_dev / ".data" / "stores.json").read_text())
    assert recorded["STRIPE_API_BASE"].startswith("http://127.0.0.1:")

    synced = billing("create-stripe-products", cwd=running_dev)
    again = billing("create-stripe-products", cwd=running_dev)
    reconciled = billing("reconcile", cwd=running_dev)

    assert synced.returncode == 0, synced.stderr
    assert "plan starter: product created" in synced.stdout
    assert again.returncode == 0, again.stderr
    assert "nothing created or changed on Stripe" in again.stdout
    assert reconciled.returncode == 0, reconciled.stderr
    assert "drift: none" in reconciled.stdout


def test_an_error_a_command_meets_is_one_line_on_stderr(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "dunning"],
        cwd=tmp_path,
        env=_terminal_environment(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ConnectionRefusedError:")


async def test_a_record_whose_process_died_is_not_trusted(
    tmp_path: Path, database_url: str
) -> None:
    path = tmp_path / "stores.json"
    finished = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await finished.wait()
    record_stores({"DATABASE_URL": database_url}, path=path)
    live = await running_dev_stores(path=path)
    path.write_text(json.dumps({"pid": finished.pid, "DATABASE_URL": database_url}))

    assert live is not None and live["DATABASE_URL"] == database_url
    assert await running_dev_stores(path=path) is None


async def test_a_record_whose_database_does_not_answer_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    # This process is alive, but the PostgreSQL it names is gone (killed with the run).
    record_stores({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, path=path)

    assert await running_dev_stores(path=path) is None
