"""Typed access to the database. Nothing outside this package writes SQL.

Writes go through an ORM :class:`~sqlmodel.Session` from :meth:`Store.write`, which
on SQLite takes the write lock up front (``BEGIN IMMEDIATE``) so concurrent writers
queue instead of failing half-way. List queries run on plain connections and return
the stored message bytes (see :mod:`porter_bundle.store.models`).

Secret columns (a set's full ``values``, a run's ``parameters``, a sensitive output's
``value``, an installation's ``secret_parameters``) are encrypted by the functions here with the store's
:class:`~porter_bundle.store.crypto.Keyring` (sessions and readers carry it): callers
hand them clear values and get clear values back (see :data:`SECRET_COLUMNS`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Integer,
    LargeBinary,
    Select,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    false,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session

from porter_bundle.store.crypto import (
    PREFIX,
    Keyring,
    associated_data,
    stored_key_id,
)
from porter_bundle.store.models import (
    ACTIVE_RUN_PREDICATE,
    BundleDocumentRow,
    BundleRefRow,
    InstallationLabelRow,
    InstallationRow,
    InstallationSetRefRow,
    LatestOutputRow,
    OutputRow,
    ResourceCountRow,
    RunLogChunkRow,
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
_latest_outputs: Table = LatestOutputRow.__table__  # type: ignore[attr-defined]
_bundle_refs: Table = BundleRefRow.__table__  # type: ignore[attr-defined]
_counts: Table = ResourceCountRow.__table__  # type: ignore[attr-defined]
_bundle_docs: Table = BundleDocumentRow.__table__  # type: ignore[attr-defined]
_run_logs: Table = RunLogChunkRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SecretColumn:
    """A column whose values are stored encrypted; ``where`` limits it to some rows."""

    table: Table
    column: str
    primary_key: tuple[str, ...]
    where: Callable[[], ColumnElement[bool]] | None = None

    @property
    def name(self) -> str:
        """``table.column``."""
        return f"{self.table.name}.{self.column}"

    @property
    def binary(self) -> bool:
        """Whether the column holds bytes (else text)."""
        return isinstance(self.table.c[self.column].type, LargeBinary)

    def seal(self, keyring: Keyring, key: Sequence[str], plain: bytes) -> bytes | str:
        """The stored form of ``plain`` in the row with primary key ``key``."""
        token = keyring.encrypt(plain, associated_data(self.table.name, key, self.column))
        return token.encode() if self.binary else token

    def open(self, keyring: Keyring, key: Sequence[str], stored: bytes | str) -> bytes:
        """The clear value of a stored one (clear values written before encryption as they are)."""
        value = bytes(stored) if isinstance(stored, bytes | bytearray | memoryview) else stored
        return keyring.decrypt(value, associated_data(self.table.name, key, self.column))


SECRET_COLUMNS: tuple[SecretColumn, ...] = (
    SecretColumn(_value_sets, "values", ("id",)),
    SecretColumn(_runs, "parameters", ("id",)),
    SecretColumn(_outputs, "value", ("run_id", "name"), lambda: _outputs.c.sensitive.is_(True)),
    SecretColumn(
        _installations,
        "secret_parameters",
        ("id",),
        lambda: _installations.c.secret_parameters.is_not(None),
    ),
)
_SET_VALUES, _RUN_PARAMETERS, _OUTPUT_VALUE, _INSTALLATION_SECRETS = SECRET_COLUMNS


def _stored(value: Any) -> bytes | str:
    return value if isinstance(value, str) else bytes(value)


def _sealed(token: bytes | str) -> bytes:
    return token.encode() if isinstance(token, str) else token


def _text(token: bytes | str) -> str:
    return token.decode() if isinstance(token, bytes) else token


def _keyring(session: Session) -> Keyring:
    keyring = session.info["keyring"]
    assert isinstance(keyring, Keyring)
    return keyring


class DuplicateKey(Exception):
    """An insert hit a uniqueness constraint (a concurrent create of the same address)."""


@dataclass(frozen=True)
class ListFilter:
    """Filters of a list call. ``namespace`` None means every namespace."""

    namespace: str | None = ""
    name_contains: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    visible: frozenset[str] | None = None
    """Namespaces the caller may see (authorization); None = all."""

    @property
    def counts_suffice(self) -> bool:
        """True when the per-namespace counters answer ``total_size`` without a count query."""
        return not self.name_contains and not self.labels and self.visible is None


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

    def __init__(self, url: str, *, keyring: Keyring, pool_size: int = 10) -> None:
        self.url = url
        self.keyring = keyring
        """Encrypts and decrypts the secret columns (:data:`SECRET_COLUMNS`)."""
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        # As many pooled connections as threads that may use one, so none is closed and
        # reopened under load (a new SQLite connection starts with a cold page cache).
        # hide_parameters: a failing statement's error (and log line) never shows bound values,
        # which may be secrets.
        kwargs: dict[str, Any] = {
            "pool_size": pool_size,
            "max_overflow": 4,
            "hide_parameters": True,
        }
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(porter_write=True)
        self._queries = QueryCache(self.engine.dialect)
        # SQLite reads keep one connection per thread that reads (the event loop's, the
        # workers'): checking a connection out of the pool and back in for every read cost more
        # than a small query itself. Reads run no transaction (each SELECT is autocommit), so
        # a kept connection holds no snapshot and blocks no checkpoint. They come from an engine
        # of their own without a pool, so they never take the pool's slots from writers;
        # close() closes them.
        self._kept = threading.local()
        self._kept_all: list[Any] = []
        self._kept_lock = threading.Lock()
        self._read_engine: Engine | None = None
        if self.is_sqlite:
            self._read_engine = create_engine(
                url, poolclass=NullPool, hide_parameters=True, connect_args=kwargs["connect_args"]
            )
            _configure_sqlite(self._read_engine)

    def migrate(self) -> None:
        """Brings the schema to the newest migration.

        Coming from a revision before encryption (0005), the clear secret values written
        until then are encrypted once (:meth:`prepare_encryption`)."""
        from porter_bundle.store.migrate import ENCRYPTION_REVISION, current_revision, upgrade

        before = current_revision(self.engine)
        upgrade(self.engine)
        if before is not None and before < ENCRYPTION_REVISION:
            found = self.prepare_encryption()
            if found:
                log.info("encrypted %d secret values stored in clear before encryption", found)

    def prepare_encryption(self, batch_size: int = 500) -> int:
        """Encrypts every secret value still stored in clear; returns how many there were."""
        return sum(self.reencrypt(batch_size, only_clear=True).values())

    def reencrypt(self, batch_size: int = 500, *, only_clear: bool = False) -> dict[str, int]:
        """Rewrites every secret value not sealed with the newest key (or, with ``only_clear``,
        every clear one) in transactions of ``batch_size`` rows. Returns the count per column."""
        done: dict[str, int] = {}
        for col in SECRET_COLUMNS:
            done[col.name] = 0
            after: tuple[Any, ...] | None = None
            while True:
                batch = self._secret_batch(col, after, batch_size, only_clear=only_clear)
                if not batch:
                    break
                after = tuple(batch[-1][:-1])
                stale = [r for r in batch if self.keyring.needs_reencryption(_stored(r[-1]))]
                if stale:
                    done[col.name] += self._reseal(col, stale)
        return done

    def _reseal(self, col: SecretColumn, rows: Sequence[Any]) -> int:
        """Rewrites ``rows`` (primary key..., stored value) with the newest key; returns how
        many. A row changed meanwhile (by a server running beside) is left as it is now."""
        done = 0
        value = col.table.c[col.column]
        with self.write() as s:
            for *key, stored in rows:
                plain = col.open(self.keyring, key, stored)
                pk = [col.table.c[c] == v for c, v in zip(col.primary_key, key, strict=True)]
                result = s.execute(
                    update(col.table)
                    .where(*pk, value == stored)  # unchanged since it was read
                    .values({col.column: col.seal(self.keyring, key, plain)})
                )
                done += cast(Any, result).rowcount
        return done

    def key_usage(self) -> dict[str, dict[str, int]]:
        """Per secret column, how many values each key id sealed ("clear": not encrypted)."""
        usage: dict[str, dict[str, int]] = {}
        for col in SECRET_COLUMNS:
            counts = usage.setdefault(col.name, {})
            after: tuple[Any, ...] | None = None
            while batch := self._secret_batch(col, after, 5000, only_clear=False):
                after = tuple(batch[-1][:-1])
                for row in batch:
                    kid = stored_key_id(_stored(row[-1])) or "clear"
                    counts[kid] = counts.get(kid, 0) + 1
        return usage

    def _secret_batch(
        self, col: SecretColumn, after: tuple[Any, ...] | None, limit: int, *, only_clear: bool
    ) -> list[Any]:
        keys = [col.table.c[c] for c in col.primary_key]
        stmt = select(*keys, col.table.c[col.column]).order_by(*keys).limit(limit)
        if col.where is not None:
            stmt = stmt.where(col.where())
        if after is not None:
            stmt = stmt.where(tuple_(*keys) > tuple_(*after))
        if only_clear:
            prefix: bytes | str = PREFIX.encode() if col.binary else PREFIX
            stmt = stmt.where(func.substr(col.table.c[col.column], 1, len(PREFIX)) != prefix)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).all())

    def close(self) -> None:
        """Closes every pooled connection (the SQLite read connections threads kept included)."""
        with self._kept_lock:
            kept, self._kept_all = self._kept_all, []
            self._kept = threading.local()
        for raw in kept:
            raw.close()
        if self._read_engine is not None:
            self._read_engine.dispose()
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed on success and rolled back on error."""
        with (
            Session(
                self._write_engine, expire_on_commit=False, info={"keyring": self.keyring}
            ) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Reader]:
        """A :class:`Reader` on a pooled connection, for the read queries below."""
        if self.is_sqlite:
            yield self._thread_reader()
            return
        raw = self.engine.raw_connection()
        try:
            yield Reader(raw, self._queries, self.keyring)
        finally:
            raw.close()  # back to the pool, which rolls back any implicit transaction

    def _thread_reader(self) -> Reader:
        reader: Reader | None = getattr(self._kept, "reader", None)
        if reader is None:
            assert self._read_engine is not None
            raw = self._read_engine.raw_connection()
            with self._kept_lock:
                self._kept_all.append(raw)
            reader = self._kept.reader = Reader(raw, self._queries, self.keyring)
        return reader


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # bind names in order for positional drivers, else None
    defaults: Mapping[
        str, Any
    ]  # values of binds the statement fixes itself (literals such as LIMIT 1)

    def args(self, params: Mapping[str, Any]) -> Any:
        merged = {**self.defaults, **params}
        return merged if self.positions is None else tuple(merged[n] for n in self.positions)


class QueryCache:
    """Compiled SQL of each read query shape, built once per process.

    Building and compiling a Core statement costs far more than SQLite running it, so
    every read query is defined once with named bind parameters, compiled for the
    engine's dialect the first time a shape is used, and executed on the DBAPI
    connection afterwards.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: dict[Hashable, _Compiled] = {}

    def get(self, key: Hashable, build: Callable[[], ClauseElement]) -> _Compiled:
        """The compiled form of the statement ``build`` makes for ``key``."""
        found = self._compiled.get(key)
        if found is None:
            compiled = cast(SQLCompiler, build().compile(dialect=self._dialect))
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            found = self._compiled[key] = _Compiled(str(compiled), order, dict(compiled.params))
        return found


class Reader:
    """Runs cached read queries on one pooled DBAPI connection."""

    def __init__(self, raw: Any, queries: QueryCache, keyring: Keyring) -> None:
        self._raw = raw
        self._queries = queries
        self.keyring = keyring
        """Decrypts the secret columns the read queries return."""

    def rows(
        self, key: Hashable, build: Callable[[], ClauseElement], params: Mapping[str, Any]
    ) -> list[Any]:
        """Every row of the query ``key`` (made by ``build``) with ``params``."""
        compiled = self._queries.get(key, build)
        cursor = self._raw.cursor()
        try:
            cursor.execute(compiled.sql, compiled.args(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def first(
        self, key: Hashable, build: Callable[[], ClauseElement], params: Mapping[str, Any]
    ) -> Any:
        """The first row, or None."""
        found = self.rows(key, build, params)
        return found[0] if found else None

    def scalar(
        self, key: Hashable, build: Callable[[], ClauseElement], params: Mapping[str, Any]
    ) -> Any:
        """The first column of the first row, or None."""
        row = self.first(key, build, params)
        return None if row is None else row[0]


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
# Queries take named bind parameters; the filter *shape* (which filters are present, how
# many labels) is the cache key, the values are the parameters.


def _like_contains(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere ("/" escapes the wildcards)."""
    return "%" + text.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def _shape(flt: ListFilter) -> tuple[bool, bool, int, int]:
    visible = -1 if flt.visible is None else len(flt.visible)
    return (flt.namespace is not None, bool(flt.name_contains), len(flt.labels), visible)


def _filter_params(flt: ListFilter) -> dict[str, Any]:
    params: dict[str, Any] = {"ns": flt.namespace, "name_pat": _like_contains(flt.name_contains)}
    for i, (key, value) in enumerate(sorted(flt.labels.items())):
        params[f"lk{i}"], params[f"lv{i}"] = key, value
    for i, namespace in enumerate(sorted(flt.visible or ())):
        params[f"vis{i}"] = namespace
    return params


def _filters(
    table: Table, label_table: Table, label_fk: str, shape: tuple[bool, bool, int, int]
) -> list[ColumnElement[bool]]:
    has_ns, has_name, n_labels, n_visible = shape
    where: list[ColumnElement[bool]] = []
    if has_ns:
        where.append(table.c.namespace == bindparam("ns"))
    if n_visible == 0:
        where.append(false())
    elif n_visible > 0:
        where.append(table.c.namespace.in_([bindparam(f"vis{i}") for i in range(n_visible)]))
    if has_name:
        where.append(table.c.name.like(bindparam("name_pat"), escape="/"))
    for i in range(n_labels):
        lt = label_table.alias(f"l{i}")
        where.append(
            exists().where(
                lt.c[label_fk] == table.c.id,
                lt.c.key == bindparam(f"lk{i}"),
                lt.c.value == bindparam(f"lv{i}"),
            )
        )
    return where


def _paged(stmt: Select[Any], spec: PageSpec) -> Select[Any]:
    if spec.skip:
        stmt = stmt.offset(bindparam("skip", type_=Integer))
    return stmt.limit(bindparam("limit", type_=Integer))


def _page_params(spec: PageSpec) -> dict[str, Any]:
    return {"skip": spec.skip, "limit": spec.limit + 1}


def _page(rows: Sequence[Any], spec: PageSpec, key_len: int) -> Page:
    docs = [bytes(r[0]) for r in rows[: spec.limit]]
    if len(rows) > spec.limit:
        last = rows[spec.limit - 1]
        return Page(docs, tuple(last[1 : 1 + key_len]))
    return Page(docs, None)


def _list_by_address(
    reader: Reader,
    query: str,
    table: Table,
    where: Callable[[], list[ColumnElement[bool]]],
    flt: ListFilter,
    spec: PageSpec,
    extra: Mapping[str, Any],
) -> Page:
    """A page sorted by (namespace, name), continuing after ``spec.after``."""
    scoped = flt.namespace is not None

    def build() -> Select[Any]:
        stmt = select(table.c.doc, table.c.namespace, table.c.name).where(*where())
        if spec.after is not None:
            if scoped:
                stmt = stmt.where(table.c.name > bindparam("after_name"))
            else:
                after = tuple_(bindparam("after_ns"), bindparam("after_name"))
                stmt = stmt.where(tuple_(table.c.namespace, table.c.name) > after)
        return _paged(stmt.order_by(table.c.namespace, table.c.name), spec)

    key = (query, _shape(flt), spec.after is not None, bool(spec.skip))
    params = {**_filter_params(flt), **_page_params(spec), **extra}
    if spec.after is not None:
        params["after_ns"], params["after_name"] = spec.after
    return _page(reader.rows(key, build, params), spec, 2)


def _count(
    reader: Reader,
    query: str,
    kind: str,
    table: Table,
    where: Callable[[], list[ColumnElement[bool]]],
    flt: ListFilter,
    extra: Mapping[str, Any],
) -> int:
    if flt.counts_suffice:
        scoped = flt.namespace is not None

        def counters() -> Select[Any]:
            stmt = select(func.coalesce(func.sum(_counts.c.count), 0)).where(
                _counts.c.kind == bindparam("kind")
            )
            return stmt.where(_counts.c.namespace == bindparam("ns")) if scoped else stmt

        return int(
            reader.scalar(("counters", scoped), counters, {"kind": kind, "ns": flt.namespace})
        )

    def build() -> Select[Any]:
        return select(func.count()).select_from(table).where(*where())

    params = {**_filter_params(flt), **extra}
    return int(reader.scalar((query + ".count", _shape(flt)), build, params))


def bump_count(session: Session, kind: str, namespace: str, delta: int) -> None:
    """Adjusts a namespace's resource counter in the caller's transaction (an upsert, race-free)."""
    insert = _dialect_insert(session)
    stmt = insert(_counts).values(kind=kind, namespace=namespace, count=delta)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[_counts.c.kind, _counts.c.namespace],
            set_={"count": _counts.c.count + delta},
        )
    )


def _dialect_insert(session: Session) -> Any:
    """The session's dialect's INSERT (with ON CONFLICT clauses): PostgreSQL's or SQLite's."""
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _flush_new(session: Session, row: Any) -> None:
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateKey(str(exc.orig)) from exc


# --- installations -----------------------------------------------------------------


def get_installation(
    session: Session, namespace: str, name: str, *, lock: bool = False
) -> InstallationRow | None:
    """The installation at (namespace, name), or None. ``lock`` holds its row until commit
    (SQLite's writers are serialized already; PostgreSQL needs the row lock)."""
    stmt = select(InstallationRow).where(
        InstallationRow.namespace == namespace,  # type: ignore[arg-type]
        InstallationRow.name == name,  # type: ignore[arg-type]
    )
    if lock and session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def get_installation_doc(reader: Reader, namespace: str, name: str) -> bytes | None:
    """The stored Installation message of (namespace, name), or None."""

    def build() -> Select[Any]:
        i = _installations
        return select(i.c.doc).where(
            i.c.namespace == bindparam("ns"), i.c.name == bindparam("name")
        )

    found = reader.scalar("installation.doc", build, {"ns": namespace, "name": name})
    return None if found is None else bytes(found)


def set_installation_secrets(session: Session, row: InstallationRow, values: bytes | None) -> None:
    """Sets the installation's sensitive parameter values (a JSON object given clear, stored
    encrypted; None: none). ``row.id`` must be set."""
    row.secret_parameters = (
        None
        if values is None
        else _sealed(_INSTALLATION_SECRETS.seal(_keyring(session), [row.id], values))
    )


def installation_secrets(session: Session, row: InstallationRow) -> bytes | None:
    """The clear JSON object of the installation's sensitive parameter values, or None."""
    if row.secret_parameters is None:
        return None
    return _INSTALLATION_SECRETS.open(_keyring(session), [row.id], row.secret_parameters)


def get_installation_secrets(reader: Reader, installation_id: str) -> bytes | None:
    """The clear JSON object of an installation's sensitive parameter values, or None."""

    def build() -> Select[Any]:
        i = _installations
        return select(i.c.secret_parameters).where(i.c.id == bindparam("id"))

    found = reader.scalar("installation.secret_parameters", build, {"id": installation_id})
    if found is None:
        return None
    return _INSTALLATION_SECRETS.open(reader.keyring, [installation_id], bytes(found))


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
    session.execute(delete(_latest_outputs).where(_latest_outputs.c.installation_id == row.id))
    session.execute(delete(_outputs).where(_outputs.c.run_id.in_(run_ids)))
    session.execute(delete(_run_logs).where(_run_logs.c.run_id.in_(run_ids)))
    session.execute(delete(_runs).where(_runs.c.installation_id == row.id))
    session.execute(
        delete(_installation_labels).where(_installation_labels.c.installation_id == row.id)
    )
    session.execute(delete(_set_refs).where(_set_refs.c.installation_id == row.id))
    session.execute(delete(_installations).where(_installations.c.id == row.id))
    bump_count(session, KIND_INSTALLATION, row.namespace, -1)


def list_installations(reader: Reader, flt: ListFilter, spec: PageSpec) -> Page:
    """A page of Installation messages sorted by (namespace, name)."""
    shape = _shape(flt)

    def where() -> list[ColumnElement[bool]]:
        return _filters(_installations, _installation_labels, "installation_id", shape)

    return _list_by_address(reader, "installations", _installations, where, flt, spec, {})


def count_installations(reader: Reader, flt: ListFilter) -> int:
    """How many installations match the filter."""
    shape = _shape(flt)

    def where() -> list[ColumnElement[bool]]:
        return _filters(_installations, _installation_labels, "installation_id", shape)

    return _count(reader, "installations", KIND_INSTALLATION, _installations, where, flt, {})


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


def get_value_set_doc(reader: Reader, kind: str, namespace: str, name: str) -> bytes | None:
    """The stored public message of a set, or None."""

    def build() -> Select[Any]:
        v = _value_sets
        return select(v.c.doc).where(
            v.c.kind == bindparam("kind"),
            v.c.namespace == bindparam("ns"),
            v.c.name == bindparam("name"),
        )

    found = reader.scalar("value_set.doc", build, {"kind": kind, "ns": namespace, "name": name})
    return None if found is None else bytes(found)


def add_value_set(session: Session, row: ValueSetRow, labels: Mapping[str, str]) -> None:
    """Inserts a set (``row.values`` given clear, stored encrypted); :class:`DuplicateKey` when
    its address is taken."""
    row.values = _sealed(_SET_VALUES.seal(_keyring(session), [row.id], row.values))
    _flush_new(session, row)
    set_value_set_labels(session, row.id, labels)
    bump_count(session, row.kind, row.namespace, +1)


def value_set_values(session: Session, row: ValueSetRow) -> bytes:
    """The clear full message of a set row read with :func:`get_value_set`."""
    return _SET_VALUES.open(_keyring(session), [row.id], row.values)


def update_value_set(session: Session, row: ValueSetRow, *, doc: bytes, values: bytes) -> None:
    """Stores a set row's new public message and full message (``values`` given clear)."""
    row.doc = doc
    row.values = _sealed(_SET_VALUES.seal(_keyring(session), [row.id], values))
    session.add(row)


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


def list_value_sets(reader: Reader, kind: str, flt: ListFilter, spec: PageSpec) -> Page:
    """A page of set messages of ``kind`` sorted by (namespace, name)."""
    shape = _shape(flt)

    def where() -> list[ColumnElement[bool]]:
        return [
            _value_sets.c.kind == bindparam("kind"),
            *_filters(_value_sets, _value_set_labels, "set_id", shape),
        ]

    return _list_by_address(reader, "value_sets", _value_sets, where, flt, spec, {"kind": kind})


def count_value_sets(reader: Reader, kind: str, flt: ListFilter) -> int:
    """How many sets of ``kind`` match the filter."""
    shape = _shape(flt)

    def where() -> list[ColumnElement[bool]]:
        return [
            _value_sets.c.kind == bindparam("kind"),
            *_filters(_value_sets, _value_set_labels, "set_id", shape),
        ]

    return _count(reader, "value_sets", kind, _value_sets, where, flt, {"kind": kind})


# --- runs and outputs --------------------------------------------------------------


def add_run(session: Session, row: RunRow) -> None:
    """Inserts a run (``row.parameters`` given clear, stored encrypted); :class:`DuplicateKey`
    when its request ID was used on the installation."""
    row.parameters = _sealed(_RUN_PARAMETERS.seal(_keyring(session), [row.id], row.parameters))
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


def get_run_doc(reader: Reader, installation_id: str, run_id: str) -> bytes | None:
    """The stored Run message, or None."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(
            _runs.c.id == bindparam("run"), _runs.c.installation_id == bindparam("inst")
        )

    found = reader.scalar("run.doc", build, {"run": run_id, "inst": installation_id})
    return None if found is None else bytes(found)


def get_run_by_request(session: Session, installation_id: str, request_id: str) -> RunRow | None:
    """The run created for a client's request ID, or None."""
    return session.execute(
        select(RunRow).where(
            RunRow.installation_id == installation_id,  # type: ignore[arg-type]
            RunRow.request_id == request_id,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


def list_runs(reader: Reader, installation_id: str, spec: PageSpec) -> Page:
    """A page of Run messages, newest first."""

    def build() -> Select[Any]:
        stmt = select(_runs.c.doc, _runs.c.id).where(_runs.c.installation_id == bindparam("inst"))
        if spec.after is not None:
            stmt = stmt.where(_runs.c.id < bindparam("after"))
        return _paged(stmt.order_by(_runs.c.id.desc()), spec)

    params = {
        "inst": installation_id,
        "after": spec.after[0] if spec.after else None,
        **_page_params(spec),
    }
    return _page(
        reader.rows(("runs", spec.after is not None, bool(spec.skip)), build, params), spec, 1
    )


def active_run(session: Session, installation_id: str) -> RunRow | None:
    """The installation's run that is still PENDING or RUNNING, if any."""
    stmt = (
        select(RunRow)
        .where(RunRow.installation_id == installation_id, text(ACTIVE_RUN_PREDICATE))  # type: ignore[arg-type]
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def run_exists(session: Session, run_id: str) -> bool:
    """Whether a run with this ID exists."""
    return session.get(RunRow, run_id) is not None


def append_run_log(session: Session, run_id: str, chunk: bytes) -> int:
    """Appends a chunk to a run's log; returns the log's new length."""
    end = session.execute(
        select(
            func.coalesce(func.max(_run_logs.c.offset + func.length(_run_logs.c.content)), 0)
        ).where(_run_logs.c.run_id == run_id)
    ).scalar_one()
    session.execute(_run_logs.insert().values(run_id=run_id, offset=int(end), content=chunk))
    return int(end) + len(chunk)


def replace_run_log(session: Session, run_id: str, content: bytes) -> None:
    """Replaces every chunk of a run's log with ``content``."""
    session.execute(delete(_run_logs).where(_run_logs.c.run_id == run_id))
    if content:
        session.execute(_run_logs.insert().values(run_id=run_id, offset=0, content=content))


def get_run_log(reader: Reader, run_id: str, start: int = 0) -> bytes:
    """A run's stored log from byte ``start`` (empty when nothing was written)."""

    def build() -> Select[Any]:
        return (
            select(_run_logs.c.offset, _run_logs.c.content)
            .where(_run_logs.c.run_id == bindparam("run"))
            .order_by(_run_logs.c.offset)
        )

    data = b""
    for offset, content in reader.rows("run.log", build, {"run": run_id}):
        chunk = bytes(content)
        if offset + len(chunk) > start:
            data += chunk[max(0, start - offset) :]
    return data


def read_run_log(reader: Reader, run_id: str, start: int, max_chunks: int) -> bytes:
    """A run's stored log from byte ``start``, at most ``max_chunks`` stored chunks of it.

    Both conditions are ranges of the primary key (run_id, offset): the chunk holding
    ``start`` and those after it, so a follower catching up never rereads the whole log.
    """
    c = _run_logs

    def build() -> Select[Any]:
        first = (
            select(func.coalesce(func.max(c.c.offset), 0))
            .where(c.c.run_id == bindparam("run"), c.c.offset <= bindparam("start"))
            .scalar_subquery()
        )
        return (
            select(c.c.offset, c.c.content)
            .where(c.c.run_id == bindparam("run"), c.c.offset >= first)
            .order_by(c.c.offset)
            .limit(bindparam("limit", type_=Integer))
        )

    parts: list[bytes] = []
    params = {"run": run_id, "start": start, "limit": max_chunks}
    for offset, content in reader.rows("run.log.from", build, params):
        chunk = bytes(content)
        if offset + len(chunk) > start:
            parts.append(chunk[max(0, start - offset) :])
    return b"".join(parts)


def get_run_log_length(reader: Reader, run_id: str) -> int:
    """How many bytes a run's stored log holds (its last chunk's end)."""

    def build() -> Select[Any]:
        c = _run_logs
        return (
            select(c.c.offset + func.length(c.c.content))
            .where(c.c.run_id == bindparam("run"))
            .order_by(c.c.offset.desc())
            .limit(1)
        )

    return int(reader.scalar("run.log.length", build, {"run": run_id}) or 0)


def get_value_set_values(reader: Reader, kind: str, namespace: str, name: str) -> bytes | None:
    """A set's full message, literal values included (for resolving a run's inputs), or None."""

    def build() -> Select[Any]:
        v = _value_sets
        return select(v.c.id, v.c["values"]).where(
            v.c.kind == bindparam("kind"),
            v.c.namespace == bindparam("ns"),
            v.c.name == bindparam("name"),
        )

    found = reader.first("value_set.values", build, {"kind": kind, "ns": namespace, "name": name})
    return None if found is None else _SET_VALUES.open(reader.keyring, [found[0]], found[1])


def get_run_doc_by_request(reader: Reader, installation_id: str, request_id: str) -> bytes | None:
    """The Run message an earlier request with this ID created, or None."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(
            _runs.c.installation_id == bindparam("inst"), _runs.c.request_id == bindparam("req")
        )

    found = reader.scalar("run.by_request", build, {"inst": installation_id, "req": request_id})
    return None if found is None else bytes(found)


def active_run_docs(reader: Reader) -> list[bytes]:
    """The Run messages of every run still PENDING or RUNNING."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(text(ACTIVE_RUN_PREDICATE)).order_by(_runs.c.id)

    return [bytes(r[0]) for r in reader.rows("runs.active", build, {})]


def get_run_parameters(reader: Reader, run_id: str) -> bytes | None:
    """Every parameter value a run used (JSON), or None when there is no such run."""

    def build() -> Select[Any]:
        return select(_runs.c.parameters).where(_runs.c.id == bindparam("run"))

    found = reader.scalar("run.parameters", build, {"run": run_id})
    return None if found is None else _RUN_PARAMETERS.open(reader.keyring, [run_id], found)


def get_run_doc_by_id(reader: Reader, run_id: str) -> bytes | None:
    """The stored Run message of any installation's run (run IDs are unique), or None."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(_runs.c.id == bindparam("run"))

    found = reader.scalar("run.doc.by_id", build, {"run": run_id})
    return None if found is None else bytes(found)


def get_latest_run_doc(reader: Reader, installation_id: str) -> tuple[bool, bytes | None]:
    """(whether the installation exists, its most recently created Run message or None)."""

    def build() -> Select[Any]:
        i = _installations
        return (
            select(i.c.id, _runs.c.doc)
            .select_from(i.outerjoin(_runs, _runs.c.id == i.c.last_run_id))
            .where(i.c.id == bindparam("inst"))
        )

    row = reader.first("run.latest", build, {"inst": installation_id})
    if row is None:
        return False, None
    return True, None if row[1] is None else bytes(row[1])


def add_outputs(session: Session, installation_id: str, rows: Sequence[OutputRow]) -> None:
    """Inserts a run's outputs and makes the run the latest producer of each output name.

    Sensitive values are given clear and stored encrypted.

    A pointer only moves forward (to a greater run ID), so a run finishing late never hides
    the value of a newer run.
    """
    if not rows:
        return
    keyring = _keyring(session)
    for r in rows:
        if r.sensitive:
            r.value = _text(_OUTPUT_VALUE.seal(keyring, [r.run_id, r.name], r.value.encode()))
    session.add_all(rows)
    session.flush()
    insert = _dialect_insert(session)
    lo = _latest_outputs
    stmt = insert(lo).values(
        [{"installation_id": installation_id, "name": r.name, "run_id": r.run_id} for r in rows]
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[lo.c.installation_id, lo.c.name],
            set_={"run_id": stmt.excluded.run_id},
            where=stmt.excluded.run_id > lo.c.run_id,
        )
    )


def list_output_docs(reader: Reader, run_id: str) -> list[bytes]:
    """The Output messages of a run, sorted by name."""

    def build() -> Select[Any]:
        return (
            select(_outputs.c.doc)
            .where(_outputs.c.run_id == bindparam("run"))
            .order_by(_outputs.c.name)
        )

    return [bytes(r[0]) for r in reader.rows("outputs", build, {"run": run_id})]


def list_latest_outputs(reader: Reader, installation_id: str) -> list[tuple[bytes, str]]:
    """(Output message, value JSON incl. sensitive ones) of each output name's most recent
    value across an installation's runs, whatever their result; sorted by name."""

    def build() -> Select[Any]:
        lo, o = _latest_outputs, _outputs
        return (
            select(o.c.doc, o.c.value, o.c.run_id, o.c.name)
            .select_from(lo.join(o, (o.c.run_id == lo.c.run_id) & (o.c.name == lo.c.name)))
            .where(lo.c.installation_id == bindparam("inst"))
            .order_by(lo.c.name)
        )

    rows = reader.rows("outputs.latest", build, {"inst": installation_id})
    kr = reader.keyring
    return [(bytes(r[0]), _OUTPUT_VALUE.open(kr, [r[2], r[3]], r[1]).decode()) for r in rows]


def list_output_values(reader: Reader, run_id: str) -> list[tuple[str, bool, str]]:
    """(name, sensitive, value JSON) of each output of a run, sensitive values decrypted;
    sorted by name. Only for callers entitled to sensitive values."""

    def build() -> Select[Any]:
        o = _outputs
        return (
            select(o.c.name, o.c.sensitive, o.c.value)
            .where(o.c.run_id == bindparam("run"))
            .order_by(o.c.name)
        )

    rows = reader.rows("outputs.values", build, {"run": run_id})
    kr = reader.keyring
    return [
        (str(r[0]), bool(r[1]), _OUTPUT_VALUE.open(kr, [run_id, r[0]], r[2]).decode()) for r in rows
    ]


def get_installation_pointers(
    reader: Reader, namespace: str, name: str
) -> tuple[str, str | None, str | None] | None:
    """(id, last succeeded run, last finished run) of an installation, or None when it does not exist."""

    def build() -> Select[Any]:
        i = _installations
        return select(i.c.id, i.c.last_succeeded_run_id, i.c.last_finished_run_id).where(
            i.c.namespace == bindparam("ns"), i.c.name == bindparam("name")
        )

    row = reader.first("installation.pointers", build, {"ns": namespace, "name": name})
    return None if row is None else (row[0], row[1], row[2])


def get_run_state(reader: Reader, installation_id: str, run_id: str) -> int | None:
    """A run's state, or None when the installation has no such run."""

    def build() -> Select[Any]:
        return select(_runs.c.state).where(
            _runs.c.id == bindparam("run"), _runs.c.installation_id == bindparam("inst")
        )

    found = reader.scalar("run.state", build, {"run": run_id, "inst": installation_id})
    return None if found is None else int(found)


# --- bundles ---------------------------------------------------------------------


def put_bundle_document(session: Session, digest: str, content: str) -> None:
    """Stores a bundle.json under its digest unless it is stored already. Content is addressed
    by its digest, so a concurrent writer of the same digest stored the same bytes: the insert
    skips a conflicting row instead of failing (race-free on PostgreSQL as on SQLite)."""
    insert = _dialect_insert(session)
    stmt = insert(_bundle_docs).values(digest=digest, content=content)
    session.execute(stmt.on_conflict_do_nothing(index_elements=[_bundle_docs.c.digest]))


def get_bundle_document(reader: Reader, digest: str) -> str | None:
    """A stored bundle.json by digest, or None."""

    def build() -> Select[Any]:
        return select(_bundle_docs.c.content).where(_bundle_docs.c.digest == bindparam("digest"))

    found = reader.scalar("bundle.document", build, {"digest": digest})
    return None if found is None else str(found)


def find_bundle_ref(reader: Reader, repository: str, *, digest: str) -> tuple[str, str] | None:
    """(reference, digest) of any reference of ``repository`` with ``digest``, or None."""
    r = _bundle_refs

    def by_digest() -> Select[Any]:
        return (
            select(r.c.reference, r.c.digest)
            .where(
                r.c.digest == bindparam("digest"),
                or_(
                    r.c.reference.like(bindparam("tagged"), escape="/"),
                    r.c.reference.like(bindparam("pinned"), escape="/"),
                ),
            )
            .order_by(r.c.reference)
            .limit(1)
        )

    prefix = repository.replace("/", "//").replace("%", "/%").replace("_", "/_")
    params = {"digest": digest, "tagged": prefix + ":%", "pinned": prefix + "@%"}
    row = reader.first("bundle.ref.digest", by_digest, params)
    return None if row is None else (row[0], row[1])


def get_bundle_ref(session: Session, reference: str) -> BundleRefRow | None:
    """A bundle reference, or None."""
    return session.get(BundleRefRow, reference)


def get_bundle(reader: Reader, reference: str) -> tuple[bytes, str] | None:
    """(Bundle message without its JSON, bundle.json text) of a reference, or None."""

    def build() -> Select[Any]:
        return (
            select(_bundle_refs.c.doc, _bundle_docs.c.content)
            .join(_bundle_docs, _bundle_docs.c.digest == _bundle_refs.c.digest)
            .where(_bundle_refs.c.reference == bindparam("ref"))
        )

    row = reader.first("bundle", build, {"ref": reference})
    return None if row is None else (bytes(row[0]), str(row[1]))


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


def list_bundles(reader: Reader, name_contains: str, spec: PageSpec) -> Page:
    """A page of Bundle messages sorted by reference."""
    r = _bundle_refs

    def build() -> Select[Any]:
        stmt = select(r.c.doc, r.c.reference)
        if name_contains:
            stmt = stmt.where(r.c.reference.like(bindparam("pat"), escape="/"))
        if spec.after is not None:
            stmt = stmt.where(r.c.reference > bindparam("after"))
        return _paged(stmt.order_by(r.c.reference), spec)

    key = ("bundles", bool(name_contains), spec.after is not None, bool(spec.skip))
    params = {
        "pat": _like_contains(name_contains),
        "after": spec.after[0] if spec.after else None,
        **_page_params(spec),
    }
    return _page(reader.rows(key, build, params), spec, 1)


def count_bundles(reader: Reader, name_contains: str) -> int:
    """How many bundle references match."""
    if not name_contains:
        return _count(reader, "bundles", KIND_BUNDLE, _bundle_refs, list, ListFilter(""), {})

    def build() -> Select[Any]:
        return (
            select(func.count())
            .select_from(_bundle_refs)
            .where(_bundle_refs.c.reference.like(bindparam("pat"), escape="/"))
        )

    return int(reader.scalar("bundles.count", build, {"pat": _like_contains(name_contains)}))


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


def count_runs(reader: Reader, installation_id: str) -> int:
    """How many runs an installation has (kept on the installation row)."""

    def build() -> Select[Any]:
        return select(_installations.c.run_count).where(_installations.c.id == bindparam("inst"))

    return int(reader.scalar("runs.count", build, {"inst": installation_id}) or 0)


def get_last_succeeded_run(
    reader: Reader, installation_id: str, actions: Sequence[int], succeeded_state: int
) -> tuple[bytes, bytes] | None:
    """(Run message, every parameter value it used) of the installation's most recent run with
    one of ``actions`` in ``succeeded_state``, or None (what desired-state apply compares with)."""

    def build() -> Select[Any]:
        return (
            select(_runs.c.doc, _runs.c.parameters, _runs.c.id)
            .where(
                _runs.c.installation_id == bindparam("inst"),
                _runs.c.state == bindparam("state"),
                or_(*(_runs.c.action == bindparam(f"action{i}") for i in range(len(actions)))),
            )
            .order_by(_runs.c.id.desc())
            .limit(1)
        )

    row = reader.first(
        ("run.last_succeeded", len(actions)),
        build,
        {
            "inst": installation_id,
            "state": succeeded_state,
            **{f"action{i}": a for i, a in enumerate(actions)},
        },
    )
    if row is None:
        return None
    return bytes(row[0]), _RUN_PARAMETERS.open(reader.keyring, [row[2]], row[1])
