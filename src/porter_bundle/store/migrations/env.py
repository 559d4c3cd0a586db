"""Alembic environment: runs migrations on the engine handed over by porter_bundle.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import porter_bundle.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
