"""output written text

outputs.written: the text a bundle wrote for an output when it is not how the stored JSON
value renders (``1.50`` is the number 1.5, ``42\\n`` the integer 42, an object is stored as
canonical JSON), so Porter's legacy API hands out the bytes the bundle wrote, as Porter does.
NULL otherwise (strings, and rows written before this revision: those render from the value).
Encrypted like ``value`` for sensitive outputs.

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
    with op.batch_alter_table("outputs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("written", sa.Text(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite 3.35+): a batch copy would drop a table others reference.
    op.execute("ALTER TABLE outputs DROP COLUMN written")
