"""run leases

runs.owner and runs.lease_expires_at: the replica executing a run and until when its lease
holds (several replicas on one database, see service/actions/leases.py). Existing runs have no
owner and an expired lease, so the first replica that starts takes the active ones over.

ix_runs_active_installation becomes unique: one active run per installation is a database
constraint, exact whichever replica records the run.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 19:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("state IN (1, 2)")


def upgrade() -> None:
    # Plain ADD COLUMNs: a batch copy would drop a table other tables reference.
    op.add_column("runs", sa.Column("owner", sa.String(length=200), nullable=True))
    op.add_column(
        "runs",
        sa.Column("lease_expires_at", sa.Float(), nullable=False, server_default=sa.text("0")),
    )
    op.drop_index("ix_runs_active_installation", table_name="runs")
    op.create_index(
        "ix_runs_active_installation",
        "runs",
        ["installation_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_runs_active_installation", table_name="runs")
    op.create_index(
        "ix_runs_active_installation",
        "runs",
        ["installation_id"],
        unique=False,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.execute("ALTER TABLE runs DROP COLUMN lease_expires_at")
    op.execute("ALTER TABLE runs DROP COLUMN owner")
