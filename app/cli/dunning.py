"""`billing dunning`: the subscriptions in dunning, as `admin/dunning/` lists them."""

import asyncio

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.common import format_when, print_table, with_database
from app.core.config import get_settings
from app.subscriptions import dunning_operators
from app.subscriptions.schemas import DunningPublic

dunning_app = typer.Typer()

_COLUMNS = (
    "subscription",
    "customer",
    "state",
    "status",
    "invoice",
    "attempts",
    "decline codes",
    "next retry",
    "grace end",
)


def _row(entry: DunningPublic) -> tuple[str, ...]:
    codes = entry.decline_codes or ([entry.last_decline_code] if entry.last_decline_code else [])
    return (
        str(entry.subscription_id),
        entry.customer_id,
        entry.state,
        entry.status,
        entry.invoice,
        str(entry.failed_payment_attempts),
        ",".join(codes) or "-",
        format_when(entry.next_payment_retry),
        format_when(entry.grace_period_end),
    )


@dunning_app.command("dunning")
def list_dunning() -> None:
    """Print the subscriptions in dunning: attempts, decline codes, next retry, grace end."""

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> list[DunningPublic]:
        async with sessionmaker() as session:
            return await dunning_operators.list_dunning(session)

    entries = asyncio.run(with_database(get_settings(), work))
    if not entries:
        typer.echo("No subscription is in dunning.")
        return
    print_table(_COLUMNS, [_row(entry) for entry in entries])
