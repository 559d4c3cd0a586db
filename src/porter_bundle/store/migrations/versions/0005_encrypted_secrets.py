"""encrypted secrets

Secret columns (value_sets.values, runs.parameters, sensitive outputs.value) hold
ciphertexts from this revision on (porter_bundle.store.crypto); their types do not
change. The schema is untouched: this revision marks the change of content, and
``Database.migrate`` encrypts the clear values of a database it upgrades past it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:40:00.000000
"""

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    # Ciphertexts stay: an older server reads them as opaque values, so decrypt first
    # (there is no tool for that: downgrading past encryption is not supported).
    pass
