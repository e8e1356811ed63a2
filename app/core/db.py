"""Engine, session factory and the request-scoped session.

The request owns the transaction: the session below commits once, after the route returned
and before the response is sent, and rolls back on any error. Services only flush.
"""

import time
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

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


class DriverStatement:
    """A `text()` statement run on the session's asyncpg connection directly.

    For the statements the dialer and the telephony backend send all day (ingestion, the
    quota check): SQLAlchemy's per-statement work (execution context, result metadata, a Row
    per row, the adapter's locks and status parsing) cost about as much CPU as asyncpg's own.
    The statement is still a prepared one (asyncpg's statement cache), inside the session's
    transaction, so the request still commits or rolls back everything at once. Written with
    `:name` parameters like any `text()`; compiled once to asyncpg's `$n`.
    """

    def __init__(self, statement: TextClause) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    async def fetch(self, session: AsyncSession, params: Mapping[str, Any]) -> list[DriverRow]:
        connection = await driver_connection(session)
        rows: list[DriverRow] = await connection.fetch(
            self.sql, *[params[name] for name in self.names], record_class=DriverRow
        )
        return rows

    async def fetchrow(self, session: AsyncSession, params: Mapping[str, Any]) -> DriverRow | None:
        connection = await driver_connection(session)
        row: DriverRow | None = await connection.fetchrow(
            self.sql, *[params[name] for name in self.names], record_class=DriverRow
        )
        return row


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, inside its transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its first statement; a statement
    sent to the driver directly must find the transaction begun, so it is begun here the
    way the adapter does it (and then committed or rolled back by the session as usual). A
    session on an AUTOCOMMIT engine (read sessions) begins nothing.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if adapted._transaction is None:
        await adapted._start_transaction()
    driver: asyncpg.Connection = raw.driver_connection
    return driver
