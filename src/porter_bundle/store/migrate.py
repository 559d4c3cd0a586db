"""Applies the Alembic migrations shipped in ``migrations/`` to a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs against ``engine`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrades the schema to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


ENCRYPTION_REVISION = "0005"
"""The first revision whose secret columns are encrypted (older databases hold them clear)."""


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision; None for a database without one (a new database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
