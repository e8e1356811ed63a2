"""Engine, session factory and the request-scoped session.

The request owns the transaction: the session below commits once, after the route returned
and before the response is sent, and rolls back on any error. Services only flush.
"""

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any, TypeAlias

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import TextClause, event
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.config import Settings
from app.core.errors import AppError

# A connection back in the pool for longer than this is pinged before its next use; one in
# steady use is not (pool_pre_ping would cost every request a round trip to PostgreSQL).
PING_CONNECTIONS_IDLE_FOR_SECONDS = 10.0
# Connections are replaced after this long, so none outlives a server-side idle timeout or a
# failover for long.
RECYCLE_CONNECTIONS_AFTER_SECONDS = 1800


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        # Every connection is kept once opened: an overflow connection is closed at its
        # checkin while the pool is full, so under load each request past the pool's size
        # would open a new one (a PostgreSQL backend started, TLS and auth) and close it again.
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=0,
        pool_recycle=RECYCLE_CONNECTIONS_AFTER_SECONDS,
        # A failed statement's error (logged, sometimes shown in a traceback) would otherwise
        # quote its bound values: emails, tokens, whatever a row held.
        hide_parameters=True,
    )
    _ping_connections_back_from_idle(engine)
    return engine


def _ping_connections_back_from_idle(engine: AsyncEngine) -> None:
    """Check a connection that sat idle before handing it out, and only such a one.

    A dead one (PostgreSQL restarted, a proxy dropped it) raises DisconnectionError, on which
    the pool discards it and checks out another, retrying up to three times: the request
    never sees it. A connection that dies while in steady use fails its statement instead;
    SQLAlchemy then invalidates every connection opened before it, so one request (which the
    client retries) meets the outage, not one per pooled connection.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def remember_checkin(_: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None:
            return  # just connected
        if time.monotonic() - checked_in_at < PING_CONNECTIONS_IDLE_FOR_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("a pooled connection failed its ping") from error


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after the commit, for the response.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for requests that only read: autocommitted statements, no BEGIN and COMMIT.

    Under READ COMMITTED (PostgreSQL's default, ours) each statement sees its own snapshot
    inside a transaction too, so a read-only request sees exactly what it saw in one, and
    saves two round trips.
    """
    return create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with sessionmaker() as session:
        yield session


def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


# For the few use cases that call Stripe between writes: they open short transactions of
# their own (a reservation, then the outcome), never one held across the Stripe call.
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]

# scope="function": the commit runs when the route returns, before the response is sent, so
# a failed commit becomes an error response instead of a 200 for a write that never happened.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]
# For routes that never write (the quota check, summaries): see create_read_sessionmaker.
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]


def is_unique_violation(error: IntegrityError) -> bool:
    # SQLSTATE 23505; asyncpg's error is wrapped by SQLAlchemy's DBAPI adapter.
    return getattr(error.orig, "sqlstate", None) == "23505"


async def flush_unique(session: AsyncSession, conflict: AppError) -> None:
    """Flush inside a savepoint; a unique violation becomes `conflict` (a 409).

    Uniqueness is the database's to enforce (two concurrent creates both pass any check made
    in Python first); this turns its verdict into the error the client should see.
    """
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        if is_unique_violation(error):
            raise conflict from None
        raise


class DriverRow(asyncpg.Record):  # type: ignore[misc]  # asyncpg ships no type hints
    """An asyncpg row whose columns read as attributes too (`row.id`), like SQLAlchemy's."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class DriverTransaction:
    """A request's transaction on a bare asyncpg connection, for the paths the dialer and the
    telephony backend call all day (usage, batches, the quota check).

    SQLAlchemy's session (its pool checkout, its transaction bookkeeping, the greenlet hop of
    each step) cost a usage request as much CPU as the ingestion's own statements. Only
    `DriverStatement`s run here, which also run on a session: the code on these paths takes
    either (`StatementTarget`), and the request still commits or rolls back once.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection


class DriverAutocommit(DriverTransaction):
    """Autocommitted statements on a pooled asyncpg connection (no BEGIN, no COMMIT: each
    statement is its own transaction): the quota check's and the summary's reads, and the
    webhook's insert of a new event.

    A statement that finds its connection dead (see `_acquire_and_begin`) is sent again on
    another, though it may have been applied before the connection was lost; so only
    statements that are safe to send twice run here: reads, and inserts that do nothing on
    a conflict.
    """

    __slots__ = ("pool",)

    def __init__(self, connection: asyncpg.Connection, pool: asyncpg.Pool) -> None:
        super().__init__(connection)
        self.pool = pool

    async def replace_lost_connection(self) -> asyncpg.Connection:
        await _discard(self.pool, self.connection)
        self.connection = await self.pool.acquire()
        return self.connection


StatementTarget: TypeAlias = AsyncSession | DriverTransaction


async def _decode_json_columns(connection: asyncpg.Connection) -> None:
    # As SQLAlchemy's asyncpg dialect sets them up: a json/jsonb column reads as the decoded
    # value, and a parameter is the JSON text (json.dumps by the caller).
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
        )


DRIVER_POOL_APPLICATION_NAME = "billing-hot-paths"


async def _keep_session(_: asyncpg.Connection) -> None:
    """What a connection back in the pool needs beyond asyncpg's own clean-up (which rolls
    back a transaction left open): nothing. Nothing on these paths leaves session state
    behind (no cursors, LISTEN, SET or advisory locks), and asyncpg's default reset would
    send a query on every release, a fifth round trip per request."""


async def create_driver_pool(settings: Settings) -> asyncpg.Pool:
    """The hot paths' own connections, beside the engine's (each DATABASE_POOL_SIZE)."""
    return await asyncpg.create_pool(
        settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1),
        # Connected on first use, like the engine: the API starts while PostgreSQL is down.
        min_size=0,
        max_size=settings.DATABASE_POOL_SIZE,
        # Replaced after a while idle, and after this many queries, so none outlives a
        # server-side timeout or a failover for long (the engine recycles its own too).
        max_inactive_connection_lifetime=RECYCLE_CONNECTIONS_AFTER_SECONDS,
        max_queries=100_000,
        init=_decode_json_columns,
        reset=_keep_session,
        # Told apart from the engine's in pg_stat_activity.
        server_settings={"application_name": DRIVER_POOL_APPLICATION_NAME},
    )


# What a pooled connection that died while idle (PostgreSQL restarted, a proxy dropped it)
# raises at its first statement. The server's farewell can also arrive in the middle of the
# statement's own messages, which asyncpg reports as an InternalClientError ("another
# operation is in progress").
_DEAD_CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
)


async def _discard(pool: asyncpg.Pool, connection: asyncpg.Connection) -> None:
    """Close a connection that failed as a dead one, never to be handed out again; the pool
    opens a new one in its place. asyncpg has often handed a lost one back already, after
    which its proxy refuses every call."""
    with suppress(asyncpg.InterfaceError):
        connection.terminate()
    with suppress(asyncpg.InterfaceError):
        await pool.release(connection)


async def _acquire_and_begin(pool: asyncpg.Pool) -> asyncpg.Connection:
    """A pooled connection with its transaction begun.

    No ping first (a round trip on every request): BEGIN is the ping. A connection that
    fails it is dropped and another one begins instead; BEGIN changes nothing, so trying it
    again is safe. A second failure is the database's, and goes up.
    """
    for attempt in (1, 2):
        connection: asyncpg.Connection = await pool.acquire()
        try:
            await connection.execute("BEGIN")
        except _DEAD_CONNECTION_ERRORS:
            await _discard(pool, connection)
            if attempt == 2:
                raise
        else:
            return connection
    raise AssertionError("unreachable")


@asynccontextmanager
async def driver_transaction(pool: asyncpg.Pool) -> AsyncIterator[DriverTransaction]:
    """A transaction on the hot paths' pool: committed when the block ends, rolled back when
    it raises. For a route that must check its input before it takes a connection (the
    webhook's signature); the others take DriverTransactionDep."""
    connection = await _acquire_and_begin(pool)
    try:
        try:
            yield DriverTransaction(connection)
        except BaseException:
            try:
                await connection.execute("ROLLBACK")
            except _DEAD_CONNECTION_ERRORS:
                # The connection died with its transaction (asyncpg may have detached it
                # already, and then refuses every call): nothing to roll back.
                await _discard(pool, connection)
            raise
        else:
            await connection.execute("COMMIT")
    finally:
        await pool.release(connection)


async def _driver_transaction(request: Request) -> AsyncIterator[DriverTransaction]:
    async with driver_transaction(request.app.state.driver_pool) as transaction:
        yield transaction


async def _driver_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.driver_pool
    return pool


@asynccontextmanager
async def driver_autocommit(pool: asyncpg.Pool) -> AsyncIterator[DriverAutocommit]:
    """A pooled connection for autocommitted statements (see DriverAutocommit)."""
    autocommit = DriverAutocommit(await pool.acquire(), pool)
    try:
        yield autocommit
    finally:
        with suppress(asyncpg.InterfaceError):
            await pool.release(autocommit.connection)


async def _driver_reads(request: Request) -> AsyncIterator[DriverAutocommit]:
    async with driver_autocommit(request.app.state.driver_pool) as reads:
        yield reads


# The request's transaction on the driver (commits as SessionDep does, when the route
# returns), and the read-only one; for the hot paths only (see DriverTransaction).
DriverTransactionDep = Annotated[DriverTransaction, Depends(_driver_transaction, scope="function")]
DriverReadsDep = Annotated[DriverAutocommit, Depends(_driver_reads, scope="function")]
# The pool itself, for `driver_transaction`.
DriverPoolDep = Annotated[asyncpg.Pool, Depends(_driver_pool)]


class DriverStatement:
    """A `text()` statement run on the asyncpg connection directly.

    For the statements the dialer and the telephony backend send all day (ingestion, the
    quota check): SQLAlchemy's per-statement work (execution context, result metadata, a Row
    per row, the adapter's locks and status parsing) cost about as much CPU as asyncpg's own.
    The statement is still a prepared one (asyncpg's statement cache), inside the request's
    transaction (a `DriverTransaction`'s, or a session's), so the request still commits or
    rolls back everything at once; or, on a `DriverAutocommit`, a transaction of its own.
    Written with `:name` parameters like any `text()`; compiled once to asyncpg's `$n`.
    """

    def __init__(self, statement: TextClause) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    async def fetch(self, target: StatementTarget, params: Mapping[str, Any]) -> list[DriverRow]:
        connection = await driver_connection(target)
        arguments = [params[name] for name in self.names]
        try:
            rows: list[DriverRow] = await connection.fetch(
                self.sql, *arguments, record_class=DriverRow
            )
        except _DEAD_CONNECTION_ERRORS:
            if not isinstance(target, DriverAutocommit):
                raise
            connection = await target.replace_lost_connection()
            rows = await connection.fetch(self.sql, *arguments, record_class=DriverRow)
        return rows

    async def fetchrow(
        self, target: StatementTarget, params: Mapping[str, Any]
    ) -> DriverRow | None:
        rows = await self.fetch(target, params)
        return rows[0] if rows else None

    async def execute(self, target: StatementTarget, params: Mapping[str, Any]) -> None:
        # Through fetch, so that on a DriverAutocommit it is sent again as fetch's are.
        await self.fetch(target, params)


async def driver_connection(target: StatementTarget) -> asyncpg.Connection:
    """The asyncpg connection under `target`, inside its transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its first statement; a statement
    sent to the driver directly must find the transaction begun, so on a session it is begun
    here the way the adapter does it (and then committed or rolled back by the session as
    usual). A session on an AUTOCOMMIT engine (read sessions) begins nothing.
    """
    if isinstance(target, DriverTransaction):
        return target.connection
    connection = await target.connection()
    raw = await connection.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if adapted._transaction is None:
        await adapted._start_transaction()
    driver: asyncpg.Connection = raw.driver_connection
    return driver
