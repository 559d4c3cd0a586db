"""CNAB claims and claim results

claims: one per run, its CNAB action name and revision (for filters) and the claim document
as recorded when the run was created. claim_results: the states each run reached (pending,
running, then the final one), as CNAB claim result documents.

Runs recorded before this revision get a claim row without a document (it is rebuilt from
the run when read) and no results (one is rebuilt from the run's state when read).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUILT_IN = {1: "install", 2: "upgrade", 4: "uninstall"}  # porter.bundle.v1.Action
_INVOKE = 3


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=253), nullable=False),
        sa.Column("revision", sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
        sa.Column("doc", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_claims_action", "claims", ["action", "run_id"], unique=False)
    op.create_table(
        "claim_results",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_claim_results_run", "claim_results", ["run_id", "id"], unique=False)
    _backfill_claims()


def _backfill_claims() -> None:
    """A claim row for every existing run: built-in actions in one statement each, custom
    actions (their name is only in the run's message) one by one."""
    for action, name in _BUILT_IN.items():
        op.execute(
            sa.text(
                "INSERT INTO claims (run_id, action, revision) "
                "SELECT id, :name, id FROM runs WHERE action = :action"
            ).bindparams(name=name, action=action)
        )
    from porter.bundle.v1.run_pb2 import Run

    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, doc FROM runs WHERE action = :action"), {"action": _INVOKE}
    ).all()
    for run_id, doc in rows:
        name = Run.FromString(bytes(doc)).custom_action or "unknown"
        bind.execute(
            sa.text("INSERT INTO claims (run_id, action, revision) VALUES (:id, :name, :id)"),
            {"id": run_id, "name": name},
        )


def downgrade() -> None:
    op.drop_index("ix_claim_results_run", table_name="claim_results")
    op.drop_table("claim_results")
    op.drop_index("ix_claims_action", table_name="claims")
    op.drop_table("claims")
