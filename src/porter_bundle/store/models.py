"""SQLModel tables: the persistent schema. Migrations in ``migrations/`` must match these.

Every resource row keeps its public protobuf message, serialized, in ``doc``: list
and get calls hand those bytes out without rebuilding messages field by field.
The other columns exist to filter, sort, enforce uniqueness and keep secrets that
the public document leaves out.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlmodel import Field, SQLModel

ID_LENGTH = 26
# PENDING and RUNNING (porter.bundle.v1.RunState). Queries for active runs use this exact
# text: SQLite uses a partial index only when the query repeats its predicate literally.
ACTIVE_RUN_PREDICATE = "state IN (1, 2)"
OWNER_LENGTH = 200
"""Longest replica id (a run's owner)."""


class InstallationRow(SQLModel, table=True):
    """One installation."""

    __tablename__ = "installations"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_installations_address"),)

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    namespace: str = Field(max_length=63)
    name: str = Field(max_length=253)
    etag: str = Field(max_length=32)
    doc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime
    updated_at: datetime
    # Server-owned status, duplicated from ``doc`` so rules and lookups need no parsing.
    state: int = 1
    last_run_id: str | None = Field(default=None, max_length=ID_LENGTH)
    last_succeeded_run_id: str | None = Field(default=None, max_length=ID_LENGTH)
    last_finished_run_id: str | None = Field(default=None, max_length=ID_LENGTH)
    # True while the last modifying run is anything but a successful uninstall.
    installed: bool = False
    run_count: int = 0
    # The values of the installation's sensitive parameters (its bundle marks them writeOnly),
    # which ``doc`` leaves out: a JSON object, encrypted (see store.secrets). None: none.
    secret_parameters: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True)
    )


class InstallationLabelRow(SQLModel, table=True):
    """One label of an installation."""

    __tablename__ = "installation_labels"
    __table_args__ = (Index("ix_installation_labels_kv", "key", "value", "installation_id"),)

    installation_id: str = Field(
        foreign_key="installations.id", ondelete="CASCADE", primary_key=True, max_length=ID_LENGTH
    )
    key: str = Field(primary_key=True, max_length=317)
    value: str = Field(max_length=256)


class InstallationSetRefRow(SQLModel, table=True):
    """A credential or parameter set that an installation names."""

    __tablename__ = "installation_set_refs"
    __table_args__ = (Index("ix_installation_set_refs_set", "kind", "set_name"),)

    installation_id: str = Field(
        foreign_key="installations.id", ondelete="CASCADE", primary_key=True, max_length=ID_LENGTH
    )
    kind: str = Field(primary_key=True, max_length=16)
    set_name: str = Field(primary_key=True, max_length=253)


class ValueSetRow(SQLModel, table=True):
    """A credential set or parameter set (``kind``). ``values`` holds the full entries, secrets included."""

    __tablename__ = "value_sets"
    __table_args__ = (UniqueConstraint("kind", "namespace", "name", name="uq_value_sets_address"),)

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    kind: str = Field(max_length=16)
    namespace: str = Field(max_length=63)
    name: str = Field(max_length=253)
    etag: str = Field(max_length=32)
    doc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    values: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime
    updated_at: datetime


class ValueSetLabelRow(SQLModel, table=True):
    """One label of a credential or parameter set."""

    __tablename__ = "value_set_labels"
    __table_args__ = (Index("ix_value_set_labels_kv", "key", "value", "set_id"),)

    set_id: str = Field(
        foreign_key="value_sets.id", ondelete="CASCADE", primary_key=True, max_length=ID_LENGTH
    )
    key: str = Field(primary_key=True, max_length=317)
    value: str = Field(max_length=256)


class RunRow(SQLModel, table=True):
    """One run of an installation. ``parameters`` holds every value used, sensitive ones included."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_installation", "installation_id", "id"),
        UniqueConstraint("installation_id", "request_id", name="uq_runs_request"),
        # Active runs are few among millions: partial indexes find them without a scan
        # (per installation when a run is created, all of them when the server restarts).
        # Unique: one active run per installation, exact across replicas (migration 0010).
        Index(
            "ix_runs_active_installation",
            "installation_id",
            unique=True,
            sqlite_where=text(ACTIVE_RUN_PREDICATE),
            postgresql_where=text(ACTIVE_RUN_PREDICATE),
        ),
        Index(
            "ix_runs_active",
            "id",
            sqlite_where=text(ACTIVE_RUN_PREDICATE),
            postgresql_where=text(ACTIVE_RUN_PREDICATE),
        ),
    )

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    installation_id: str = Field(
        foreign_key="installations.id", ondelete="CASCADE", max_length=ID_LENGTH
    )
    state: int
    action: int
    request_id: str | None = Field(default=None, max_length=128)
    doc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    parameters: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime
    owner: str | None = Field(default=None, max_length=OWNER_LENGTH)
    """The replica executing the run (its replica id) while it holds the lease; None: nobody
    (a run recorded before leases, or handed back by a draining replica)."""
    lease_expires_at: float = Field(
        default=0.0, sa_column=Column(Float, nullable=False, server_default=text("0"))
    )
    """When the owner's lease ends (Unix seconds) unless its heartbeat renews it; past it,
    any replica may take the run over."""


class ClaimRow(SQLModel, table=True):
    """The CNAB claim of a run (one per run): its action name and revision for filters, and the
    claim document as recorded when the run was created (claims are immutable).

    ``doc`` is the claim JSON without sensitive parameter values; NULL for runs recorded before
    claims were stored (their claim is then rebuilt from the run when read).
    """

    __tablename__ = "claims"
    __table_args__ = (Index("ix_claims_action", "action", "run_id"),)

    run_id: str = Field(
        foreign_key="runs.id", ondelete="CASCADE", primary_key=True, max_length=ID_LENGTH
    )
    action: str = Field(max_length=253)
    revision: str = Field(max_length=ID_LENGTH)
    doc: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ClaimResultRow(SQLModel, table=True):
    """One CNAB claim result: a state a run reached (pending, running, then a final one)."""

    __tablename__ = "claim_results"
    __table_args__ = (Index("ix_claim_results_run", "run_id", "id"),)

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    run_id: str = Field(foreign_key="runs.id", ondelete="CASCADE", max_length=ID_LENGTH)
    status: int
    created_at: datetime
    doc: str = Field(sa_column=Column(Text, nullable=False))


class OutputRow(SQLModel, table=True):
    """One output value of a run. ``value`` is its JSON, sensitive ones included; ``written``
    the text the bundle wrote when that is not how ``value`` renders for Porter's legacy API
    (``1.50``, ``42\n``, an object as written), else NULL. Both encrypted when sensitive."""

    __tablename__ = "outputs"

    run_id: str = Field(
        foreign_key="runs.id", ondelete="CASCADE", primary_key=True, max_length=ID_LENGTH
    )
    name: str = Field(primary_key=True, max_length=253)
    sensitive: bool
    value: str = Field(sa_column=Column(Text, nullable=False))
    doc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    written: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Porter marks the output internal (its definition's $comment is "porter-internal", e.g.
    # porter-state): Porter's legacy API never lists it.
    internal: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    # True once output retention removed the value ("" then; ``doc`` says expired too).
    expired: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class LatestOutputRow(SQLModel, table=True):
    """Which run last produced each output name of an installation, whatever its result.

    Kept by :func:`porter_bundle.store.add_outputs` in the transaction that records a
    run's outputs, so Porter's "latest outputs" (per name, the most recent value) costs one
    primary-key range read per call however many runs the installation has.
    """

    __tablename__ = "latest_outputs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "name"], ["outputs.run_id", "outputs.name"], ondelete="CASCADE"
        ),
        Index("ix_latest_outputs_output", "run_id", "name"),
    )

    installation_id: str = Field(
        foreign_key="installations.id", ondelete="CASCADE", primary_key=True, max_length=ID_LENGTH
    )
    name: str = Field(primary_key=True, max_length=253)
    run_id: str = Field(max_length=ID_LENGTH)


class BundleDocumentRow(SQLModel, table=True):
    """A bundle.json, stored once per content digest."""

    __tablename__ = "bundle_documents"

    digest: str = Field(primary_key=True, max_length=135)
    content: str = Field(sa_column=Column(Text, nullable=False))


class BundleRefRow(SQLModel, table=True):
    """A reference (``repo:tag`` or ``repo@digest``) that names a bundle document."""

    __tablename__ = "bundle_refs"

    reference: str = Field(primary_key=True, max_length=512)
    digest: str = Field(
        sa_column=Column(
            String(135), ForeignKey("bundle_documents.digest"), nullable=False, index=True
        )
    )
    doc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime


class ResourceCountRow(SQLModel, table=True):
    """How many resources of a kind each namespace holds: ``total_size`` without counting rows."""

    __tablename__ = "resource_counts"

    kind: str = Field(primary_key=True, max_length=16)
    namespace: str = Field(primary_key=True, max_length=63)
    count: int = 0


class RunLogChunkRow(SQLModel, table=True):
    """A piece of a run's combined stdout/stderr, at its byte offset in the whole log.

    Append-only: a reader resumes from any offset without rereading what it has.
    """

    __tablename__ = "run_log_chunks"

    run_id: str = Field(
        foreign_key="runs.id", ondelete="CASCADE", primary_key=True, max_length=ID_LENGTH
    )
    offset: int = Field(primary_key=True)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a model, for queries written in SQLAlchemy Core."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]
