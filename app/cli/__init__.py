"""The `billing` command: operations on the service, and the local supervisor.

Each module holds a group of commands on a sub-app; a sub-app added without a name puts its
commands at the top level, so they stay `billing setup-packages`, not `billing catalog ...`.
"""

import typer

from app.cli.archive import archive_app
from app.cli.catalog import catalog_app
from app.cli.console import console_app
from app.cli.dev import dev_app
from app.cli.dunning import dunning_app
from app.cli.notifications import notifications_app
from app.cli.stripe_sync import stripe_sync_app
from app.cli.tokens import tokens_app
from app.cli.webhooks import webhooks_app
from app.core.config import ConfigurationError, get_settings
from app.core.logging import configure_logging

app = typer.Typer(no_args_is_help=True, help="Operate the billing service.")


@app.callback()
def _log_to_stderr() -> None:
    # Before any command: its report stays alone on stdout; warnings and errors go to stderr.
    configure_logging(get_settings(), for_command=True)


# The order `billing --help` lists them in: running it, the catalog, access, Stripe, upkeep.
for commands in (
    dev_app,
    catalog_app,
    tokens_app,
    console_app,
    stripe_sync_app,
    webhooks_app,
    dunning_app,
    notifications_app,
    archive_app,
):
    app.add_typer(commands)


def describe_error(error: BaseException) -> str:
    """An error as one line: the message an operator acts on, without a traceback."""
    text = " ".join(str(error).split())
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def main() -> None:
    """The `billing` executable: the commands, with any error they meet reported as one line
    on stderr and a non-zero exit (2 for a configuration error, else 1), never a traceback."""
    try:
        app()
    except ConfigurationError as error:
        typer.echo(f"configuration error: {' '.join(str(error).split())}", err=True)
        raise SystemExit(2) from None
    except Exception as error:
        typer.echo(f"error: {describe_error(error)}", err=True)
        raise SystemExit(1) from None
