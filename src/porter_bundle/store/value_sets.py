"""Queries of credential and parameter sets (one table, told apart by ``kind``) and their labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, delete, select
from sqlmodel import Session

from porter_bundle.store.errors import flush_new
from porter_bundle.store.listing import (
    ListFilter,
    Page,
    PageSpec,
    bump_count,
    count,
    filters,
    list_by_address,
    shape_of,
)
from porter_bundle.store.models import ValueSetLabelRow, ValueSetRow, table_of
from porter_bundle.store.queries import Reader
from porter_bundle.store.secrets import SET_VALUES, sealed, session_keyring

_value_sets = table_of(ValueSetRow)
_value_set_labels = table_of(ValueSetLabelRow)


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
    row.values = sealed(SET_VALUES.seal(session_keyring(session), [row.id], row.values))
    flush_new(session, row)
    set_value_set_labels(session, row.id, labels)
    bump_count(session, row.kind, row.namespace, +1)


def value_set_values(session: Session, row: ValueSetRow) -> bytes:
    """The clear full message of a set row read with :func:`get_value_set`."""
    return SET_VALUES.open(session_keyring(session), [row.id], row.values)


def update_value_set(session: Session, row: ValueSetRow, *, doc: bytes, values: bytes) -> None:
    """Stores a set row's new public message and full message (``values`` given clear)."""
    row.doc = doc
    row.values = sealed(SET_VALUES.seal(session_keyring(session), [row.id], values))
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
    shape = shape_of(flt)

    def where() -> list[ColumnElement[bool]]:
        return [
            _value_sets.c.kind == bindparam("kind"),
            *filters(_value_sets, _value_set_labels, "set_id", shape),
        ]

    return list_by_address(reader, "value_sets", _value_sets, where, flt, spec, {"kind": kind})


def count_value_sets(reader: Reader, kind: str, flt: ListFilter) -> int:
    """How many sets of ``kind`` match the filter."""
    shape = shape_of(flt)

    def where() -> list[ColumnElement[bool]]:
        return [
            _value_sets.c.kind == bindparam("kind"),
            *filters(_value_sets, _value_set_labels, "set_id", shape),
        ]

    return count(reader, "value_sets", kind, _value_sets, where, flt, {"kind": kind})


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
    return None if found is None else SET_VALUES.open(reader.keyring, [found[0]], found[1])
