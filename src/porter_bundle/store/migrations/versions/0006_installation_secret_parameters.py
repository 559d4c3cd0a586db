"""installation secret parameters

installations.secret_parameters: the values of an installation's sensitive parameters
(its bundle marks them writeOnly), encrypted like the other secret columns; the
installation's doc leaves them out. NULL for installations without any.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_parameters", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # The values leave with the column: an older server never knew them. A plain ALTER
    # TABLE (SQLite 3.35+): a batch copy would drop a table other tables reference.
    op.execute("ALTER TABLE installations DROP COLUMN secret_parameters")
