"""Access tokens for local use, shaped like the dashboard's."""

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from app.cli.common import fail, local_jwt_secret
from app.core.auth import ROLE_BILLING_ADMIN, ROLE_SERVICE, issue_access_token
from app.core.clock import SystemClock
from app.core.config import get_settings

tokens_app = typer.Typer()


@tokens_app.command("issue-token")
def issue_token(
    user_id: Annotated[str, typer.Option(help="The dashboard user id the token speaks for.")],
    role: Annotated[
        list[str] | None,
        typer.Option(help=f"A role to grant ({ROLE_BILLING_ADMIN}, {ROLE_SERVICE}); repeatable."),
    ] = None,
    email: Annotated[str | None, typer.Option(help="An email claim.")] = None,
    expires_in: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 3600,
    private_key_file: Annotated[
        Path | None,
        typer.Option(help="PEM private key, for RS256/ES256 (HS256 signs with JWT_SECRET)."),
    ] = None,
) -> None:
    """Print an access token shaped like the dashboard's (SimpleJWT), for local use.

    Signs with JWT_SECRET, or with the local secret that `make run` keeps under .data/.
    """
    settings = get_settings()
    if settings.JWT_SECRET is None and settings.JWT_ALGORITHM.startswith("HS"):
        local_secret = local_jwt_secret(create=False)
        if local_secret is None:
            fail("JWT_SECRET is not set and `make run` has not made a local one", exit_code=2)
        settings = settings.model_copy(update={"JWT_SECRET": SecretStr(local_secret)})
    signing_key = private_key_file.read_text() if private_key_file else None
    if not settings.JWT_ALGORITHM.startswith("HS") and signing_key is None:
        fail(f"{settings.JWT_ALGORITHM} needs --private-key-file", exit_code=2)
    token = issue_access_token(
        settings,
        user_id=user_id,
        roles=role or [],
        now=SystemClock().now(),
        lifetime=timedelta(seconds=expires_in),
        signing_key=signing_key,
        email=email,
    )
    typer.echo(token)
