"""Database errors are translated at the store's boundary: every SQLAlchemy exception class is
either a named domain error or a deliberate fault, and an unreachable database is
DatabaseUnavailable (logged under the incident ID its message names) on every path."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.dialects.postgresql.psycopg
import sqlalchemy.dialects.sqlite
import sqlalchemy.orm
from sqlalchemy import exc as sa
from sqlalchemy.orm import exc as orm

from porter_bundle import errors
from porter_bundle.config import sqlite_url
from porter_bundle.store import (
    Database,
    Keyring,
    Reader,
    get_bundle_document,
    put_bundle_document,
)
from porter_bundle.store.errors import translate
from porter_bundle.store.queries import QueryCache

DIGEST = "sha256:" + "ef" * 32

UNAVAILABLE: set[type[sa.SQLAlchemyError]] = {
    sa.OperationalError,  # down, restarting, refused, locked, serialization failure
    sa.DisconnectionError,  # the pool found a connection dead
    sa.InvalidatePoolError,
    sa.TimeoutError,  # every pooled connection busy for pool_timeout
}
"""Classes that become errors.DatabaseUnavailable (UNAVAILABLE)."""

FAULTS: set[type[sa.SQLAlchemyError]] = {
    # A query or schema of ours is wrong; the store maps the one integrity error it expects
    # (a uniqueness conflict on insert) to DuplicateKey where it expects it.
    sa.SQLAlchemyError,
    sa.StatementError,
    sa.DBAPIError,
    sa.DatabaseError,
    sa.DataError,
    sa.IntegrityError,
    sa.InterfaceError,
    sa.InternalError,
    sa.ProgrammingError,
    sa.NotSupportedError,
    # Misuse of SQLAlchemy's API: bugs, never conditions of the database.
    sa.AmbiguousColumnError,
    sa.AmbiguousForeignKeysError,
    sa.ArgumentError,
    sa.AwaitRequired,
    sa.CircularDependencyError,
    sa.CompileError,
    sa.ConstraintColumnNotFoundError,
    sa.DuplicateColumnError,
    sa.IdentifierError,
    sa.IllegalStateChangeError,
    sa.InvalidRequestError,
    sa.MissingGreenlet,
    sa.MultipleResultsFound,
    sa.NoDBAPILoaded,
    sa.NoForeignKeysError,
    sa.NoInspectionAvailable,
    sa.NoReferenceError,
    sa.NoReferencedColumnError,
    sa.NoReferencedTableError,
    sa.NoResultFound,
    sa.NoSuchColumnError,
    sa.NoSuchModuleError,
    sa.NoSuchTableError,
    sa.ObjectNotExecutableError,
    sa.PendingRollbackError,
    sa.ResourceClosedError,
    sa.UnboundExecutionError,
    sa.UnreflectableTableError,
    sa.UnsupportedCompilationError,
    orm.DetachedInstanceError,
    orm.FlushError,
    orm.LoaderStrategyException,
    orm.MappedAnnotationError,
    orm.ObjectDeletedError,
    orm.ObjectDereferencedError,
    orm.StaleDataError,
    orm.UnmappedClassError,
    orm.UnmappedColumnError,
    orm.UnmappedError,
    orm.UnmappedInstanceError,
    sqlalchemy.orm.evaluator.UnevaluatableError,
}
"""Classes that pass as they are: faults of ours, INTERNAL under an incident ID."""


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def _sqlalchemy_classes() -> set[type[sa.SQLAlchemyError]]:
    every = {sa.SQLAlchemyError} | _all_subclasses(sa.SQLAlchemyError)
    return {c for c in every if c.__module__.startswith("sqlalchemy.")}


def _instance(cls: type[sa.SQLAlchemyError]) -> sa.SQLAlchemyError:
    """An instance of ``cls`` that prints, whatever its constructor wants."""
    if issubclass(cls, sa.DBAPIError):
        exc: sa.SQLAlchemyError = cls("SELECT 1", None, Exception("the driver's message"))
    elif issubclass(cls, sa.StatementError):
        exc = cls("message", "SELECT 1", None, None)
    else:
        try:
            exc = cls("message")
        except (TypeError, AttributeError):  # a constructor of particular arguments: bypass it
            exc = cls.__new__(cls)
            Exception.__init__(exc, "message")
    str(exc)
    return exc


def test_every_sqlalchemy_exception_class_is_classified():
    found = _sqlalchemy_classes()
    unlisted = found - UNAVAILABLE - FAULTS
    assert not unlisted, f"classify these in UNAVAILABLE or FAULTS (and the store): {unlisted}"
    for cls in sorted(found, key=lambda c: c.__qualname__):
        mapped = translate(_instance(cls))
        if cls in UNAVAILABLE:
            assert isinstance(mapped, errors.DatabaseUnavailable), cls
        else:
            assert mapped is None, cls


def test_a_dbapi_error_that_invalidated_its_connection_is_unavailable():
    lost = sa.InterfaceError("SELECT 1", None, Exception("gone"), connection_invalidated=True)
    assert isinstance(translate(lost), errors.DatabaseUnavailable)


def test_database_unavailable_is_an_unavailable_with_a_stable_reason():
    err = translate(_instance(sa.OperationalError))
    assert isinstance(err, errors.Unavailable)
    assert err.reason == "DATABASE_UNAVAILABLE"


def _unreachable(tmp_path: Path, kind: str) -> str:
    if kind == "sqlite":
        (tmp_path / "a-directory").mkdir()
        return sqlite_url(tmp_path / "a-directory")  # SQLite cannot open a directory
    return "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=5"  # refused


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("path", ["write", "read", "migrate"])
def test_an_unreachable_database_is_unavailable_with_an_incident(tmp_path, caplog, kind, path):
    db = Database(_unreachable(tmp_path, kind), keyring=Keyring.generate())
    try:
        with (
            caplog.at_level(logging.ERROR, logger="porter_bundle.store"),
            pytest.raises(errors.DatabaseUnavailable) as err,
        ):
            if path == "write":
                with db.write() as s:
                    put_bundle_document(s, DIGEST, "{}")
            elif path == "read":
                with db.read() as r:
                    get_bundle_document(r, DIGEST)
            else:
                db.migrate()
    finally:
        db.close()
    incident = err.value.metadata["incident"]
    assert err.value.reason == "DATABASE_UNAVAILABLE"
    assert err.value.message == f"the database is unavailable; retry later (incident {incident})"
    assert isinstance(err.value.__cause__, sa.OperationalError)
    [record] = [r for r in caplog.records if incident in r.getMessage()]
    assert record.getMessage() == f"database unavailable (incident {incident})"
    assert record.exc_info is not None and record.exc_info[1] is err.value.__cause__


class _FailingConnection:
    """A DBAPI connection whose every statement fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def cursor(self) -> _FailingConnection:
        return self

    def execute(self, *_args: object) -> None:
        raise self.error

    def close(self) -> None:
        pass


def test_reads_translate_the_drivers_exceptions_like_writes(store):
    dbapi = store.engine.dialect.loaded_dbapi
    queries = QueryCache(store.engine.dialect)
    failing = _FailingConnection(dbapi.OperationalError("server closed the connection"))
    reader = Reader(failing, queries, store.keyring)
    with pytest.raises(sa.OperationalError) as err:
        get_bundle_document(reader, "bound-value-Qx31")
    assert isinstance(err.value.orig, dbapi.OperationalError)
    assert "bound-value-Qx31" not in str(err.value)
    # A fault of the driver (here a programming error) stays a fault, in SQLAlchemy's class.
    failing.error = dbapi.ProgrammingError("misuse")
    with pytest.raises(sa.ProgrammingError):
        get_bundle_document(reader, DIGEST)


def test_a_closed_sqlite_read_connection_is_a_fault_not_a_driver_exception(store):
    if not store.is_sqlite:
        pytest.skip("kept read connections are SQLite's")
    with store.read() as r:
        r._raw.driver_connection.close()
        with pytest.raises(sa.ProgrammingError) as err:
            get_bundle_document(r, DIGEST)
    assert isinstance(err.value.orig, sqlite3.ProgrammingError)
