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

# A printed token is easy to leak (shell history, a pasted terminal): it must expire soon.
MAX_LIFETIME_SECONDS = 24 * 3600


@tokens_app.command("issue-token")
def issue_token(
    user_id: Annotated[str, typer.Option(help="The dashboard user id the token speaks for.")],
    role: Annotated[
        list[str] | None,
        typer.Option(help=f"A role to grant ({ROLE_BILLING_ADMIN}, {ROLE_SERVICE}); repeatable."),
    ] = None,
    email: Annotated[str | None, typer.Option(help="An email claim.")] = None,
    expires_in: Annotated[
        int,
        typer.Option(
            help=f"Lifetime in seconds (at most {MAX_LIFETIME_SECONDS}).",
            min=1,
            max=MAX_LIFETIME_SECONDS,
        ),
    ] = 3600,
    allow_roles_in_production: Annotated[
        bool,
        typer.Option(
            "--allow-roles-in-production",
            help="Grant --role with ENVIRONMENT=production (refused without this).",
        ),
    ] = False,
    private_key_file: Annotated[
        Path | None,
        typer.Option(help="PEM private key, for RS256/ES256 (HS256 signs with JWT_SECRET)."),
    ] = None,
) -> None:
    """Print an access token shaped like the dashboard's (SimpleJWT), for local use.

    Signs with JWT_SECRET, or with the local secret that `make run` keeps under .data/.
    """
    settings = get_settings()
    if role and settings.ENVIRONMENT == "production" and not allow_roles_in_production:
        fail(
            "a role in production needs --allow-roles-in-production "
            "(a billing_admin or service token can act on every account)",
            exit_code=2,
        )
    if not settings.user_id_pattern.fullmatch(user_id):
        fail(
            f"{user_id!r} is not a dashboard user id (JWT_USER_ID_PATTERN: "
            f"{settings.JWT_USER_ID_PATTERN})",
            exit_code=2,
        )
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
