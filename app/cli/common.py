"""What the command modules share: a database (and the Stripe gateway) for one run, the
local token secret, and the way a command reports an error and stops."""

import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import NoReturn, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.stores import DATA_DIR, command_stores
from app.core.config import ConfigurationError, Settings
from app.core.db import create_engine, create_sessionmaker
from app.stripe_gateway.client import StripeGateway

T = TypeVar("T")

# A local run's token secret: random per checkout, never in the repository.
DEV_JWT_SECRET_FILE = DATA_DIR / "dev-jwt-secret"


def local_jwt_secret(*, create: bool) -> str | None:
    if DEV_JWT_SECRET_FILE.exists():
        return DEV_JWT_SECRET_FILE.read_text().strip()
    if not create:
        return None
    DATA_DIR.mkdir(exist_ok=True)
    secret = secrets.token_urlsafe(48)
    DEV_JWT_SECRET_FILE.write_text(secret)
    DEV_JWT_SECRET_FILE.chmod(0o600)
    return secret


def format_when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Rows under their column names, each column as wide as its widest cell."""
    lines = [columns, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(columns))]
    for line in lines:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def fail(message: str, *, exit_code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(exit_code)


async def with_database(
    settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    """Run `work(sessionmaker)` on an engine that lives as long as the work, on the stores
    `command_stores` finds (or starts); a store that is not configured stops the command with
    one line, not a traceback."""
    async with command_stores(settings) as settings_with_stores:
        try:
            engine = create_engine(settings_with_stores)
        except ConfigurationError as error:
            fail(f"configuration error: {error}", exit_code=2)
        try:
            return await work(create_sessionmaker(engine))
        finally:
            await engine.dispose()


async def with_stripe(
    settings: Settings,
    work: Callable[[async_sessionmaker[AsyncSession], StripeGateway], Awaitable[T]],
) -> T:
    """Run `work(sessionmaker, gateway)` with a database and the Stripe gateway."""

    async with command_stores(settings) as settings_with_stores:

        async def with_gateway(sessionmaker: async_sessionmaker[AsyncSession]) -> T:
            return await work(sessionmaker, StripeGateway(settings_with_stores))

        return await with_database(settings_with_stores, with_gateway)
