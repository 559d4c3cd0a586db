"""The SQLModel models and the Alembic migrations describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import porter_bundle.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)


def test_migrations_at_head_match_the_models(store):
    """A fresh database migrated to head (SQLite, or PostgreSQL with PORTER_BUNDLE_TEST_POSTGRES)
    has the models' tables, columns and their types, indexes, constraints and defaults."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, SQLModel.metadata) == []
