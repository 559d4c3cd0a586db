"""output written text and internal flag

outputs.written: the text a bundle wrote for an output when it is not how the stored JSON
value renders (``1.50`` is the number 1.5, ``42\\n`` the integer 42, an object is stored as
canonical JSON), so Porter's legacy API hands out the bytes the bundle wrote, as Porter does.
NULL otherwise (strings, and rows written before this revision: those render from the value).
Encrypted like ``value`` for sensitive outputs.

outputs.internal: Porter marks the output internal (its definition's ``$comment`` is
``porter-internal``, e.g. ``porter-state``); Porter's legacy API never lists it, even when
the bundle is no longer stored. False for rows written before (the legacy API then goes by
the bundle of the run, when stored).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (SQLite takes a NOT NULL column with a constant default):
    # a batch copy would drop and recreate "outputs", and with it, by ON DELETE CASCADE,
    # every row of latest_outputs.
    op.add_column("outputs", sa.Column("written", sa.Text(), nullable=True))
    op.add_column(
        "outputs", sa.Column("internal", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite 3.35+): a batch copy would drop a table others reference.
    op.execute("ALTER TABLE outputs DROP COLUMN internal")
    op.execute("ALTER TABLE outputs DROP COLUMN written")
