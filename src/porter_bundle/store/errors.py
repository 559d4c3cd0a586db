"""Database errors at the store's boundary: an insert that hits a uniqueness constraint is
:class:`DuplicateKey` (see :func:`flush_new`), which the service turns into the resource's
ALREADY_EXISTS."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session


class DuplicateKey(Exception):
    """An insert hit a uniqueness constraint (a concurrent create of the same address)."""


def flush_new(session: Session, row: Any) -> None:
    """Inserts ``row`` now; :class:`DuplicateKey` when it collides with a stored one."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateKey(str(exc.orig)) from exc
