"""The database: its engine and connection pool, SQLite's settings, write sessions and read
connections, migrations. Nothing outside the store writes SQL.

Writes go through an ORM :class:`~sqlmodel.Session` from :meth:`Database.write`, which on
SQLite takes the write lock up front (``BEGIN IMMEDIATE``) so concurrent writers queue
instead of failing half-way. Reads run cached queries on plain DBAPI connections
(:class:`~porter_bundle.store.queries.Reader`) and return the stored message bytes (see
:mod:`porter_bundle.store.models`). Both translate database errors into domain errors
(:mod:`porter_bundle.store.errors`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from porter_bundle import errors
from porter_bundle.store import secrets
from porter_bundle.store.crypto import Keyring
from porter_bundle.store.errors import database_errors, dbapi_error, translate
from porter_bundle.store.queries import QueryCache, Reader

log = logging.getLogger(__name__)


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


class Database:
    """The database: connections, transactions and migrations; the query functions of
    :mod:`porter_bundle.store` run on its sessions and readers."""

    def __init__(self, url: str, *, keyring: Keyring, pool_size: int = 10) -> None:
        self.url = url
        self.keyring = keyring
        """Encrypts and decrypts the secret columns (:mod:`porter_bundle.store.secrets`)."""
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
        self._closed = False
        event.listen(self.engine, "checkin", self._on_checkin)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(porter_write=True)
        self._queries = QueryCache(self.engine.dialect)
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
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

        with database_errors():
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
        with database_errors():
            return secrets.reencrypt(self, batch_size, only_clear=only_clear)

    def key_usage(self) -> dict[str, dict[str, int]]:
        """Per secret column, how many values each key id sealed ("clear": not encrypted)."""
        with database_errors():
            return secrets.key_usage(self)

    def _on_checkin(self, dbapi_conn: Any, _record: Any) -> None:
        """After :meth:`close`, a connection a thread still held when the pool was disposed
        is closed as it comes back (else it would stay open until garbage collected)."""
        if self._closed and dbapi_conn is not None:
            with contextlib.suppress(Exception):
                dbapi_conn.close()

    def close(self) -> None:
        """Closes every pooled connection (the SQLite read connections threads kept included);
        one checked out meanwhile is closed when it is given back."""
        self._closed = True
        with self._kept_lock:
            kept, self._kept_all = self._kept_all, []
            self._kept = threading.local()
        for raw in kept:
            raw.close()
        if self._read_engine is not None:
            self._read_engine.dispose()
        self.engine.dispose()

    def pool_usage(self) -> tuple[int, int]:
        """Pooled connections (in use, the pool's size): the metrics' database pool usage."""
        pool: Any = self.engine.pool
        return int(pool.checkedout()), int(pool.size())

    def ping(self) -> None:
        """One round trip to the database (health); DatabaseUnavailable, naming the cause
        and logging nothing (the health probe logs the change), when it fails."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            raise errors.DatabaseUnavailable(
                f"the database is unavailable: {type(getattr(exc, 'orig', None) or exc).__name__}"
            ) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed on success and rolled back on error."""
        with (
            database_errors(),
            Session(
                self._write_engine, expire_on_commit=False, info={"keyring": self.keyring}
            ) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Reader]:
        """A :class:`~porter_bundle.store.queries.Reader` on a pooled connection, for the read
        queries."""
        # translate() inline, not database_errors(): reads are the hot path, and each
        # generator-based context manager costs a few microseconds (a small read: about 20).
        try:
            if self.is_sqlite:
                yield self._thread_reader()
                return
            raw = self._raw_connection(self.engine)
            try:
                yield Reader(raw, self._queries, self.keyring)
            finally:
                raw.close()  # back to the pool, which rolls back any implicit transaction
        except SQLAlchemyError as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _raw_connection(self, engine: Engine) -> Any:
        """A pooled DBAPI connection; the driver's exceptions come out as SQLAlchemy's (which
        ``engine.connect()`` would raise, and ``raw_connection()`` does not)."""
        try:
            return engine.raw_connection()
        except self._driver_error as exc:
            raise dbapi_error(exc, None, engine.dialect) from exc

    def _thread_reader(self) -> Reader:
        reader: Reader | None = getattr(self._kept, "reader", None)
        if reader is None:
            assert self._read_engine is not None
            raw = self._raw_connection(self._read_engine)
            with self._kept_lock:
                self._kept_all.append(raw)
            reader = self._kept.reader = Reader(raw, self._queries, self.keyring)
        return reader


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
