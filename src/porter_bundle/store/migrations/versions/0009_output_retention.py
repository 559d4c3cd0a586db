"""output retention

outputs.expired: True once the server's output retention removed the value (the row keeps
the output's name, type, sensitivity and digest). Existing values are all kept.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 16:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN: a batch copy would drop a table other tables reference.
    op.add_column(
        "outputs",
        sa.Column("expired", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # An older server cannot read an output without its value: expired ones leave (they are
    # never an installation's latest, so no latest_outputs row points at them).
    op.execute("DELETE FROM outputs WHERE expired")
    op.execute("ALTER TABLE outputs DROP COLUMN expired")
