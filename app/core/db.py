"""Engine, session factory and the request-scoped session.

The request owns the transaction: the session below commits once, after the route returned
and before the response is sent, and rolls back on any error. Services only flush.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.core.errors import AppError


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_POOL_SIZE,
        pool_pre_ping=True,
        # A failed statement's error (logged, sometimes shown in a traceback) would otherwise
        # quote its bound values: emails, tokens, whatever a row held.
        hide_parameters=True,
    )


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


def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


# For the few use cases that call Stripe between writes: they open short transactions of
# their own (a reservation, then the outcome), never one held across the Stripe call.
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]

# scope="function": the commit runs when the route returns, before the response is sent, so
# a failed commit becomes an error response instead of a 200 for a write that never happened.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


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
