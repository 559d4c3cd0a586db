"""The read path below the ORM: each read query compiled once, run on a DBAPI connection.

Building and compiling a Core statement costs far more than SQLite running it, so every
read query is defined once with named bind parameters (its *shape* is the cache key, the
values are the parameters), compiled for the engine's dialect the first time that shape is
used, and executed on the DBAPI connection afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from porter_bundle.store.crypto import Keyring
from porter_bundle.store.errors import dbapi_error


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
    """Compiled SQL of each read query shape, built once per process."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        """The dialect the queries are compiled for (and whose driver runs them)."""
        self._compiled: dict[Hashable, _Compiled] = {}

    def get(self, key: Hashable, build: Callable[[], ClauseElement]) -> _Compiled:
        """The compiled form of the statement ``build`` makes for ``key``."""
        found = self._compiled.get(key)
        if found is None:
            compiled = cast(SQLCompiler, build().compile(dialect=self.dialect))
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            found = self._compiled[key] = _Compiled(str(compiled), order, dict(compiled.params))
        return found


class Reader:
    """Runs cached read queries on one pooled DBAPI connection.

    The driver's exceptions come out as SQLAlchemy's (see
    :func:`~porter_bundle.store.errors.dbapi_error`), for the store's boundary to translate."""

    def __init__(self, raw: Any, queries: QueryCache, keyring: Keyring) -> None:
        self._raw = raw
        self._queries = queries
        self._driver_error: type[Exception] = queries.dialect.loaded_dbapi.Error
        self.keyring = keyring
        """Decrypts the secret columns the read queries return."""

    def rows(
        self, key: Hashable, build: Callable[[], ClauseElement], params: Mapping[str, Any]
    ) -> list[Any]:
        """Every row of the query ``key`` (made by ``build``) with ``params``."""
        compiled = self._queries.get(key, build)
        try:
            cursor = self._raw.cursor()
            try:
                cursor.execute(compiled.sql, compiled.args(params))
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except self._driver_error as exc:
            raise dbapi_error(exc, compiled.sql, self._queries.dialect) from exc

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
