"""Typed access to the database. Nothing outside this package writes SQL.

Writes go through an ORM :class:`~sqlmodel.Session` from :meth:`Store.write`, which
on SQLite takes the write lock up front (``BEGIN IMMEDIATE``) so concurrent writers
queue instead of failing half-way. List queries run on plain connections and return
the stored message bytes (see :mod:`porter_bundle.store.models`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from porter_bundle.store.models import (
    BundleDocumentRow,
    BundleRefRow,
    InstallationLabelRow,
    InstallationRow,
    InstallationSetRefRow,
    OutputRow,
    ResourceCountRow,
    RunRow,
    ValueSetLabelRow,
    ValueSetRow,
)

log = logging.getLogger(__name__)

KIND_INSTALLATION = "installation"
KIND_CREDENTIAL_SET = "credential"
KIND_PARAMETER_SET = "parameter"
KIND_BUNDLE = "bundle"

_installations: Table = InstallationRow.__table__  # type: ignore[attr-defined]
_installation_labels: Table = InstallationLabelRow.__table__  # type: ignore[attr-defined]
_set_refs: Table = InstallationSetRefRow.__table__  # type: ignore[attr-defined]
_value_sets: Table = ValueSetRow.__table__  # type: ignore[attr-defined]
_value_set_labels: Table = ValueSetLabelRow.__table__  # type: ignore[attr-defined]
_runs: Table = RunRow.__table__  # type: ignore[attr-defined]
_outputs: Table = OutputRow.__table__  # type: ignore[attr-defined]
_bundle_refs: Table = BundleRefRow.__table__  # type: ignore[attr-defined]
_counts: Table = ResourceCountRow.__table__  # type: ignore[attr-defined]
_bundle_docs: Table = BundleDocumentRow.__table__  # type: ignore[attr-defined]


class DuplicateKey(Exception):
    """An insert hit a uniqueness constraint (a concurrent create of the same address)."""


@dataclass(frozen=True)
class ListFilter:
    """Filters of a list call. ``namespace`` None means every namespace."""

    namespace: str | None = ""
    name_contains: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def counts_suffice(self) -> bool:
        """True when the per-namespace counters answer ``total_size`` without a count query."""
        return not self.name_contains and not self.labels


@dataclass(frozen=True)
class PageSpec:
    """Which slice of a sorted list to read: rows after ``after`` (a sort key), minus ``skip``."""

    limit: int
    after: tuple[str, ...] | None = None
    skip: int = 0


@dataclass(frozen=True)
class Page:
    """Stored message bytes of one page, and the sort key to continue after (None on the last page)."""

    docs: list[bytes]
    next_after: tuple[str, ...] | None


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


class Store:
    """The database: connections, migrations and every query the service needs."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(porter_write=True)

    def migrate(self) -> None:
        """Brings the schema to the newest migration."""
        from porter_bundle.store.migrate import upgrade

        upgrade(self.engine)

    def close(self) -> None:
        """Closes every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed on success and rolled back on error."""
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection (a consistent snapshot for the block)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, case-sensitive LIKE; writers take the lock when they begin."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("porter_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


# --- shared list machinery ---------------------------------------------------------


def _name_label_filters(
    table: Table, label_table: Table, label_fk: str, flt: ListFilter
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if flt.namespace is not None:
        where.append(table.c.namespace == flt.namespace)
    if flt.name_contains:
        where.append(table.c.name.contains(flt.name_contains, autoescape=True))
    for key, value in sorted(flt.labels.items()):
        lt = label_table.alias()
        where.append(
            exists().where(lt.c[label_fk] == table.c.id, lt.c.key == key, lt.c.value == value)
        )
    return where


def _after_namespace_name(
    table: Table, flt: ListFilter, after: tuple[str, ...] | None
) -> list[ColumnElement[bool]]:
    if after is None:
        return []
    ns, name = after
    if flt.namespace is not None:
        return [table.c.name > name]
    return [tuple_(table.c.namespace, table.c.name) > tuple_(ns, name)]


def _page(rows: Sequence[Any], spec: PageSpec, key_len: int) -> Page:
    docs = [r[0] for r in rows[: spec.limit]]
    if len(rows) > spec.limit:
        last = rows[spec.limit - 1]
        return Page(docs, tuple(last[1 : 1 + key_len]))
    return Page(docs, None)


def _list_by_address(
    conn: Connection,
    table: Table,
    where: list[ColumnElement[bool]],
    flt: ListFilter,
    spec: PageSpec,
) -> Page:
    stmt = (
        select(table.c.doc, table.c.namespace, table.c.name)
        .where(*where, *_after_namespace_name(table, flt, spec.after))
        .order_by(table.c.namespace, table.c.name)
        .offset(spec.skip or None)
        .limit(spec.limit + 1)
    )
    return _page(conn.execute(stmt).all(), spec, 2)


def _count(
    conn: Connection, kind: str, table: Table, where: list[ColumnElement[bool]], flt: ListFilter
) -> int:
    if flt.counts_suffice:
        stmt = select(func.coalesce(func.sum(_counts.c.count), 0)).where(_counts.c.kind == kind)
        if flt.namespace is not None:
            stmt = stmt.where(_counts.c.namespace == flt.namespace)
        return int(conn.execute(stmt).scalar_one())
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def bump_count(session: Session, kind: str, namespace: str, delta: int) -> None:
    """Adjusts a namespace's resource counter in the caller's transaction (an upsert, race-free)."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(_counts).values(kind=kind, namespace=namespace, count=delta)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[_counts.c.kind, _counts.c.namespace],
            set_={"count": _counts.c.count + delta},
        )
    )


def _flush_new(session: Session, row: Any) -> None:
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateKey(str(exc.orig)) from exc


# --- installations -----------------------------------------------------------------


def get_installation(session: Session, namespace: str, name: str) -> InstallationRow | None:
    """The installation at (namespace, name), or None."""
    return session.execute(
        select(InstallationRow).where(
            InstallationRow.namespace == namespace,  # type: ignore[arg-type]
            InstallationRow.name == name,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


def get_installation_doc(conn: Connection, namespace: str, name: str) -> bytes | None:
    """The stored Installation message of (namespace, name), or None."""
    return conn.execute(
        select(_installations.c.doc).where(
            _installations.c.namespace == namespace, _installations.c.name == name
        )
    ).scalar_one_or_none()


def add_installation(
    session: Session,
    row: InstallationRow,
    labels: Mapping[str, str],
    credential_sets: Sequence[str],
    parameter_sets: Sequence[str],
) -> None:
    """Inserts an installation; :class:`DuplicateKey` when its address is taken."""
    _flush_new(session, row)
    set_installation_children(session, row.id, labels, credential_sets, parameter_sets)
    bump_count(session, KIND_INSTALLATION, row.namespace, +1)


def set_installation_children(
    session: Session,
    installation_id: str,
    labels: Mapping[str, str],
    credential_sets: Sequence[str],
    parameter_sets: Sequence[str],
) -> None:
    """Replaces an installation's labels and set references."""
    session.execute(
        delete(_installation_labels).where(
            _installation_labels.c.installation_id == installation_id
        )
    )
    session.execute(delete(_set_refs).where(_set_refs.c.installation_id == installation_id))
    if labels:
        session.execute(
            _installation_labels.insert(),
            [{"installation_id": installation_id, "key": k, "value": v} for k, v in labels.items()],
        )
    refs = [
        {"installation_id": installation_id, "kind": KIND_CREDENTIAL_SET, "set_name": n}
        for n in credential_sets
    ]
    refs += [
        {"installation_id": installation_id, "kind": KIND_PARAMETER_SET, "set_name": n}
        for n in parameter_sets
    ]
    if refs:
        session.execute(_set_refs.insert(), refs)


def delete_installation(session: Session, row: InstallationRow) -> None:
    """Deletes an installation with its labels, runs and outputs."""
    run_ids = select(_runs.c.id).where(_runs.c.installation_id == row.id)
    session.execute(delete(_outputs).where(_outputs.c.run_id.in_(run_ids)))
    session.execute(delete(_runs).where(_runs.c.installation_id == row.id))
    session.execute(
        delete(_installation_labels).where(_installation_labels.c.installation_id == row.id)
    )
    session.execute(delete(_set_refs).where(_set_refs.c.installation_id == row.id))
    session.execute(delete(_installations).where(_installations.c.id == row.id))
    bump_count(session, KIND_INSTALLATION, row.namespace, -1)


def list_installations(conn: Connection, flt: ListFilter, spec: PageSpec) -> Page:
    """A page of Installation messages sorted by (namespace, name)."""
    where = _name_label_filters(_installations, _installation_labels, "installation_id", flt)
    return _list_by_address(conn, _installations, where, flt, spec)


def count_installations(conn: Connection, flt: ListFilter) -> int:
    """How many installations match the filter."""
    where = _name_label_filters(_installations, _installation_labels, "installation_id", flt)
    return _count(conn, KIND_INSTALLATION, _installations, where, flt)


def installations_using_set(
    session: Session, kind: str, namespace: str, name: str
) -> list[tuple[str, str]]:
    """Installations (namespace, name) whose set reference resolves to this set.

    A set in a namespace serves that namespace's installations; a global set serves
    every installation that names it and has no set of that name in its own namespace.
    """
    i = _installations
    stmt = (
        select(i.c.namespace, i.c.name)
        .join(_set_refs, _set_refs.c.installation_id == i.c.id)
        .where(_set_refs.c.kind == kind, _set_refs.c.set_name == name)
        .order_by(i.c.namespace, i.c.name)
        .limit(20)
    )
    if namespace:
        stmt = stmt.where(i.c.namespace == namespace)
    else:
        shadow = exists().where(
            _value_sets.c.kind == kind,
            _value_sets.c.name == name,
            _value_sets.c.namespace == i.c.namespace,
            _value_sets.c.namespace != "",
        )
        stmt = stmt.where(or_(i.c.namespace == "", ~shadow))
    return [(r[0], r[1]) for r in session.execute(stmt).all()]


# --- credential and parameter sets -------------------------------------------------


def get_value_set(session: Session, kind: str, namespace: str, name: str) -> ValueSetRow | None:
    """The set of ``kind`` at (namespace, name), or None."""
    return session.execute(
        select(ValueSetRow).where(
            ValueSetRow.kind == kind,  # type: ignore[arg-type]
            ValueSetRow.namespace == namespace,  # type: ignore[arg-type]
            ValueSetRow.name == name,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


def get_value_set_doc(conn: Connection, kind: str, namespace: str, name: str) -> bytes | None:
    """The stored public message of a set, or None."""
    return conn.execute(
        select(_value_sets.c.doc).where(
            _value_sets.c.kind == kind,
            _value_sets.c.namespace == namespace,
            _value_sets.c.name == name,
        )
    ).scalar_one_or_none()


def add_value_set(session: Session, row: ValueSetRow, labels: Mapping[str, str]) -> None:
    """Inserts a set; :class:`DuplicateKey` when its address is taken."""
    _flush_new(session, row)
    set_value_set_labels(session, row.id, labels)
    bump_count(session, row.kind, row.namespace, +1)


def set_value_set_labels(session: Session, set_id: str, labels: Mapping[str, str]) -> None:
    """Replaces a set's labels."""
    session.execute(delete(_value_set_labels).where(_value_set_labels.c.set_id == set_id))
    if labels:
        session.execute(
            _value_set_labels.insert(),
            [{"set_id": set_id, "key": k, "value": v} for k, v in labels.items()],
        )


def delete_value_set(session: Session, row: ValueSetRow) -> None:
    """Deletes a set and its labels."""
    session.execute(delete(_value_set_labels).where(_value_set_labels.c.set_id == row.id))
    session.execute(delete(_value_sets).where(_value_sets.c.id == row.id))
    bump_count(session, row.kind, row.namespace, -1)


def list_value_sets(conn: Connection, kind: str, flt: ListFilter, spec: PageSpec) -> Page:
    """A page of set messages of ``kind`` sorted by (namespace, name)."""
    where = [_value_sets.c.kind == kind]
    where += _name_label_filters(_value_sets, _value_set_labels, "set_id", flt)
    return _list_by_address(conn, _value_sets, where, flt, spec)


def count_value_sets(conn: Connection, kind: str, flt: ListFilter) -> int:
    """How many sets of ``kind`` match the filter."""
    where = [_value_sets.c.kind == kind]
    where += _name_label_filters(_value_sets, _value_set_labels, "set_id", flt)
    return _count(conn, kind, _value_sets, where, flt)


# --- runs and outputs --------------------------------------------------------------


def add_run(session: Session, row: RunRow) -> None:
    """Inserts a run; :class:`DuplicateKey` when its request ID was used on the installation."""
    _flush_new(session, row)
    session.execute(
        update(_installations)
        .where(_installations.c.id == row.installation_id)
        .values(run_count=_installations.c.run_count + 1)
    )


def get_run(session: Session, installation_id: str, run_id: str) -> RunRow | None:
    """A run of the installation, or None."""
    return session.execute(
        select(RunRow).where(
            RunRow.id == run_id,  # type: ignore[arg-type]
            RunRow.installation_id == installation_id,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


def get_run_doc(conn: Connection, installation_id: str, run_id: str) -> bytes | None:
    """The stored Run message, or None."""
    return conn.execute(
        select(_runs.c.doc).where(_runs.c.id == run_id, _runs.c.installation_id == installation_id)
    ).scalar_one_or_none()


def get_run_by_request(session: Session, installation_id: str, request_id: str) -> RunRow | None:
    """The run created for a client's request ID, or None."""
    return session.execute(
        select(RunRow).where(
            RunRow.installation_id == installation_id,  # type: ignore[arg-type]
            RunRow.request_id == request_id,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


def list_runs(conn: Connection, installation_id: str, spec: PageSpec) -> Page:
    """A page of Run messages, newest first."""
    stmt = select(_runs.c.doc, _runs.c.id).where(_runs.c.installation_id == installation_id)
    if spec.after is not None:
        stmt = stmt.where(_runs.c.id < spec.after[0])
    stmt = stmt.order_by(_runs.c.id.desc()).offset(spec.skip or None).limit(spec.limit + 1)
    return _page(conn.execute(stmt).all(), spec, 1)


def add_outputs(session: Session, rows: Sequence[OutputRow]) -> None:
    """Inserts a run's outputs."""
    session.add_all(rows)
    session.flush()


def list_output_docs(conn: Connection, run_id: str) -> list[bytes]:
    """The Output messages of a run, sorted by name."""
    stmt = select(_outputs.c.doc).where(_outputs.c.run_id == run_id).order_by(_outputs.c.name)
    return list(conn.execute(stmt).scalars())


def get_installation_pointers(
    conn: Connection, namespace: str, name: str
) -> tuple[str, str | None, str | None] | None:
    """(id, last succeeded run, last finished run) of an installation, or None when it does not exist."""
    row = conn.execute(
        select(
            _installations.c.id,
            _installations.c.last_succeeded_run_id,
            _installations.c.last_finished_run_id,
        ).where(_installations.c.namespace == namespace, _installations.c.name == name)
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


def get_run_state(conn: Connection, installation_id: str, run_id: str) -> int | None:
    """A run's state, or None when the installation has no such run."""
    return conn.execute(
        select(_runs.c.state).where(
            _runs.c.id == run_id, _runs.c.installation_id == installation_id
        )
    ).scalar_one_or_none()


# --- bundles ---------------------------------------------------------------------


def put_bundle_document(session: Session, digest: str, content: str) -> None:
    """Stores a bundle.json under its digest unless it is stored already."""
    if session.get(BundleDocumentRow, digest) is None:
        session.add(BundleDocumentRow(digest=digest, content=content))
        session.flush()


def get_bundle_ref(session: Session, reference: str) -> BundleRefRow | None:
    """A bundle reference, or None."""
    return session.get(BundleRefRow, reference)


def get_bundle(conn: Connection, reference: str) -> tuple[bytes, str] | None:
    """(Bundle message without its JSON, bundle.json text) of a reference, or None."""
    row = conn.execute(
        select(_bundle_refs.c.doc, _bundle_docs.c.content)
        .join(_bundle_docs, _bundle_docs.c.digest == _bundle_refs.c.digest)
        .where(_bundle_refs.c.reference == reference)
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def add_bundle_ref(session: Session, row: BundleRefRow) -> None:
    """Inserts a reference; :class:`DuplicateKey` when it exists."""
    _flush_new(session, row)
    bump_count(session, KIND_BUNDLE, "", +1)


def replace_bundle_ref(session: Session, row: BundleRefRow, *, digest: str, doc: bytes) -> None:
    """Points an existing reference at another document (a moved tag)."""
    row.digest = digest
    row.doc = doc
    session.add(row)
    session.flush()


def delete_bundle_ref(session: Session, row: BundleRefRow) -> None:
    """Deletes a reference, and its document when no other reference names it."""
    digest = row.digest
    session.execute(delete(_bundle_refs).where(_bundle_refs.c.reference == row.reference))
    bump_count(session, KIND_BUNDLE, "", -1)
    still_used = session.execute(
        select(_bundle_refs.c.reference).where(_bundle_refs.c.digest == digest).limit(1)
    ).first()
    if still_used is None:
        session.execute(delete(_bundle_docs).where(_bundle_docs.c.digest == digest))


def list_bundles(conn: Connection, name_contains: str, spec: PageSpec) -> Page:
    """A page of Bundle messages sorted by reference."""
    stmt = select(_bundle_refs.c.doc, _bundle_refs.c.reference)
    if name_contains:
        stmt = stmt.where(_bundle_refs.c.reference.contains(name_contains, autoescape=True))
    if spec.after is not None:
        stmt = stmt.where(_bundle_refs.c.reference > spec.after[0])
    stmt = stmt.order_by(_bundle_refs.c.reference).offset(spec.skip or None).limit(spec.limit + 1)
    return _page(conn.execute(stmt).all(), spec, 1)


def count_bundles(conn: Connection, name_contains: str) -> int:
    """How many bundle references match."""
    if not name_contains:
        stmt = select(func.coalesce(func.sum(_counts.c.count), 0)).where(
            _counts.c.kind == KIND_BUNDLE
        )
        return int(conn.execute(stmt).scalar_one())
    stmt2 = (
        select(func.count())
        .select_from(_bundle_refs)
        .where(_bundle_refs.c.reference.contains(name_contains, autoescape=True))
    )
    return int(conn.execute(stmt2).scalar_one())


__all__ = [
    "KIND_BUNDLE",
    "KIND_CREDENTIAL_SET",
    "KIND_INSTALLATION",
    "KIND_PARAMETER_SET",
    "DuplicateKey",
    "ListFilter",
    "Page",
    "PageSpec",
    "Store",
]


def count_runs(conn: Connection, installation_id: str) -> int:
    """How many runs an installation has (kept on the installation row)."""
    return int(
        conn.execute(
            select(_installations.c.run_count).where(_installations.c.id == installation_id)
        ).scalar_one()
    )
