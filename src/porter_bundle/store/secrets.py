"""Secret columns: which stored values are encrypted, and their re-encryption.

A set's full ``values``, a run's ``parameters``, a sensitive output's ``value`` (and
``written`` text, when kept) and an installation's ``secret_parameters`` are encrypted by the query functions with the
database's :class:`~porter_bundle.store.crypto.Keyring` (sessions and readers carry it):
callers hand them clear values and get clear values back. :func:`reencrypt` rewrites them
with the newest key; :func:`key_usage` tells which keys sealed them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, LargeBinary, Table, func, select, tuple_, update
from sqlmodel import Session

from porter_bundle.store.crypto import PREFIX, Keyring, associated_data, stored_key_id
from porter_bundle.store.models import InstallationRow, OutputRow, RunRow, ValueSetRow, table_of

if TYPE_CHECKING:
    from porter_bundle.store.engine import Database


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


_installations = table_of(InstallationRow)
_outputs = table_of(OutputRow)

SECRET_COLUMNS: tuple[SecretColumn, ...] = (
    SecretColumn(table_of(ValueSetRow), "values", ("id",)),
    SecretColumn(table_of(RunRow), "parameters", ("id",)),
    SecretColumn(_outputs, "value", ("run_id", "name"), lambda: _outputs.c.sensitive.is_(True)),
    SecretColumn(
        _outputs,
        "written",
        ("run_id", "name"),
        lambda: _outputs.c.sensitive.is_(True) & _outputs.c.written.is_not(None),
    ),
    SecretColumn(
        _installations,
        "secret_parameters",
        ("id",),
        lambda: _installations.c.secret_parameters.is_not(None),
    ),
)
"""Every encrypted column."""

SET_VALUES, RUN_PARAMETERS, OUTPUT_VALUE, OUTPUT_WRITTEN, INSTALLATION_SECRETS = SECRET_COLUMNS


def sealed(token: bytes | str) -> bytes:
    """A sealed value as the bytes a binary column stores."""
    return token.encode() if isinstance(token, str) else token


def sealed_text(token: bytes | str) -> str:
    """A sealed value as the text a text column stores."""
    return token.decode() if isinstance(token, bytes) else token


def session_keyring(session: Session) -> Keyring:
    """The keyring a write session carries (see :meth:`Database.write`)."""
    keyring = session.info["keyring"]
    assert isinstance(keyring, Keyring)
    return keyring


def _stored(value: Any) -> bytes | str:
    return value if isinstance(value, str) else bytes(value)


def reencrypt(db: Database, batch_size: int = 500, *, only_clear: bool = False) -> dict[str, int]:
    """Rewrites every secret value not sealed with the newest key (or, with ``only_clear``,
    every clear one) in transactions of ``batch_size`` rows. Returns the count per column."""
    done: dict[str, int] = {}
    for col in SECRET_COLUMNS:
        done[col.name] = 0
        after: tuple[Any, ...] | None = None
        while True:
            batch = _secret_batch(db, col, after, batch_size, only_clear=only_clear)
            if not batch:
                break
            after = tuple(batch[-1][:-1])
            stale = [r for r in batch if db.keyring.needs_reencryption(_stored(r[-1]))]
            if stale:
                done[col.name] += reseal(db, col, stale)
    return done


def reseal(db: Database, col: SecretColumn, rows: Sequence[Any]) -> int:
    """Rewrites ``rows`` (primary key..., stored value) with the newest key; returns how
    many. A row changed meanwhile (by a server running beside) is left as it is now."""
    done = 0
    value = col.table.c[col.column]
    with db.write() as s:
        for *key, stored in rows:
            plain = col.open(db.keyring, key, stored)
            pk = [col.table.c[c] == v for c, v in zip(col.primary_key, key, strict=True)]
            result = s.execute(
                update(col.table)
                .where(*pk, value == stored)  # unchanged since it was read
                .values({col.column: col.seal(db.keyring, key, plain)})
            )
            done += cast(Any, result).rowcount
    return done


def key_usage(db: Database) -> dict[str, dict[str, int]]:
    """Per secret column, how many values each key id sealed ("clear": not encrypted)."""
    usage: dict[str, dict[str, int]] = {}
    for col in SECRET_COLUMNS:
        counts = usage.setdefault(col.name, {})
        after: tuple[Any, ...] | None = None
        while batch := _secret_batch(db, col, after, 5000, only_clear=False):
            after = tuple(batch[-1][:-1])
            for row in batch:
                kid = stored_key_id(_stored(row[-1])) or "clear"
                counts[kid] = counts.get(kid, 0) + 1
    return usage


def _secret_batch(
    db: Database, col: SecretColumn, after: tuple[Any, ...] | None, limit: int, *, only_clear: bool
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
    with db.engine.connect() as conn:
        return list(conn.execute(stmt).all())
