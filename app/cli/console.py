"""The operator console: a one-time sign-in link, for an operator at the service's shell."""

import asyncio
from datetime import timedelta
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.common import fail, with_database
from app.console import service as console_service
from app.core.clock import SystemClock
from app.core.config import get_settings

console_app = typer.Typer()


@console_app.command("console-link")
def console_link(
    user_id: Annotated[
        str, typer.Option(help="The dashboard user id the operator acts as (in the audit).")
    ],
    base_url: Annotated[
        str | None,
        typer.Option(help="Where the service is reached. Default: http://HOST:PORT."),
    ] = None,
) -> None:
    """Print a link that signs in to the operator console once, within CONSOLE_LINK_MINUTES."""
    settings = get_settings()
    if not settings.user_id_pattern.fullmatch(user_id):
        fail(
            f"{user_id!r} is not a dashboard user id (JWT_USER_ID_PATTERN: "
            f"{settings.JWT_USER_ID_PATTERN})",
            exit_code=2,
        )
    lifetime = timedelta(minutes=settings.CONSOLE_LINK_MINUTES)

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
        async with sessionmaker.begin() as session:
            return await console_service.create_sign_in_link(
                session, user_id=user_id, now=SystemClock().now(), lifetime=lifetime
            )

    secret = asyncio.run(with_database(settings, work))
    root = (base_url or f"http://{settings.HOST}:{settings.PORT}").rstrip("/")
    # After `#`: browsers never send a fragment, so the secret reaches no server log.
    typer.echo(f"{root}/admin/link#{secret}")
    typer.echo(
        f"valid once, for {settings.CONSOLE_LINK_MINUTES} minutes; anyone with it signs in "
        "as an operator",
        err=True,
    )
