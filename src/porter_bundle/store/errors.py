"""Database errors translated at the store's boundary: no SQLAlchemy or DBAPI exception that
stands for a condition of the database leaves the store as it is.

* The database cannot be reached or cannot take the work now (:data:`UNAVAILABLE`: the
  server is down or restarting, SQLite is locked past its timeout, every pooled connection
  is busy; or any DBAPI error after which the connection was invalidated):
  :class:`~porter_bundle.errors.DatabaseUnavailable`, logged with its cause under an incident
  ID that the error's message and metadata carry (the client sees the ID, never the cause).
* An insert that hits a uniqueness constraint: :class:`DuplicateKey` (see :func:`flush_new`),
  which the service turns into the resource's ALREADY_EXISTS.
* Anything else (a wrong query, a schema that does not match, a misuse of the ORM) is a fault
  of ours and passes as it is: the API reports it as INTERNAL under an incident ID.

:meth:`~porter_bundle.store.Database.write`, :meth:`~porter_bundle.store.Database.read` and
every other use of a connection go through :func:`translate` (:func:`database_errors`).
Reads run on DBAPI connections: :func:`dbapi_error` wraps their driver's exceptions (from
connecting or running a query) in SQLAlchemy's classes first, so both paths are translated
alike.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session

from porter_bundle import errors

log = logging.getLogger(__name__)

UNAVAILABLE: tuple[type[SQLAlchemyError], ...] = (
    OperationalError,
    DisconnectionError,
    PoolTimeout,
)
"""The exception classes (and their subclasses) that mean the database is unavailable."""


class DuplicateKey(Exception):
    """An insert hit a uniqueness constraint (a concurrent create of the same address)."""


def translate(exc: SQLAlchemyError) -> errors.PorterBundleError | None:
    """The domain error ``exc`` stands for, or None when it is a fault of ours (raised as it is).

    An unavailable database is logged here, with the cause, under the incident ID the error
    carries."""
    if isinstance(exc, UNAVAILABLE) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        incident = secrets.token_hex(6)
        log.error("database unavailable (incident %s)", incident, exc_info=exc)
        return errors.DatabaseUnavailable(
            f"the database is unavailable; retry later (incident {incident})",
            metadata={"incident": incident},
        )
    return None


@contextmanager
def database_errors() -> Iterator[None]:
    """Raises the domain error of any SQLAlchemy exception raised inside (see :func:`translate`)."""
    try:
        yield
    except SQLAlchemyError as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


def dbapi_error(exc: Exception, statement: str | None, dialect: Dialect) -> BaseException:
    """SQLAlchemy's exception for the driver's exception ``exc`` (bound values hidden), as a
    statement run through SQLAlchemy would have raised it."""
    return DBAPIError.instance(
        statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
    )


def flush_new(session: Session, row: Any) -> None:
    """Inserts ``row`` now; :class:`DuplicateKey` when it collides with a stored one."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateKey(str(exc.orig)) from exc
