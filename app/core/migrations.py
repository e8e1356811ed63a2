from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def alembic_config(database_url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = database_url
    # Keep the caller's logging (the CLI's, pytest's) instead of alembic.ini's.
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(database_url: str) -> None:
    """Apply every migration. Alembic runs its own event loop: call this from sync code."""
    command.upgrade(alembic_config(database_url), "head")
