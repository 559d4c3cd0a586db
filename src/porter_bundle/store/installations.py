"""Queries of installations: rows, their labels and set references, their secret parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, delete, exists, or_, select
from sqlmodel import Session

from porter_bundle.store.errors import flush_new
from porter_bundle.store.listing import (
    KIND_CREDENTIAL_SET,
    KIND_INSTALLATION,
    KIND_PARAMETER_SET,
    ListFilter,
    Page,
    PageSpec,
    bump_count,
    count,
    filters,
    list_by_address,
    shape_of,
)
from porter_bundle.store.models import (
    InstallationLabelRow,
    InstallationRow,
    InstallationSetRefRow,
    LatestOutputRow,
    OutputRow,
    RunLogChunkRow,
    RunRow,
    ValueSetRow,
    table_of,
)
from porter_bundle.store.queries import Reader
from porter_bundle.store.secrets import INSTALLATION_SECRETS, sealed, session_keyring

_installations = table_of(InstallationRow)
_installation_labels = table_of(InstallationLabelRow)
_set_refs = table_of(InstallationSetRefRow)
_value_sets = table_of(ValueSetRow)
_runs = table_of(RunRow)
_outputs = table_of(OutputRow)
_latest_outputs = table_of(LatestOutputRow)
_run_logs = table_of(RunLogChunkRow)


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
        else sealed(INSTALLATION_SECRETS.seal(session_keyring(session), [row.id], values))
    )


def installation_secrets(session: Session, row: InstallationRow) -> bytes | None:
    """The clear JSON object of the installation's sensitive parameter values, or None."""
    if row.secret_parameters is None:
        return None
    return INSTALLATION_SECRETS.open(session_keyring(session), [row.id], row.secret_parameters)


def get_installation_secrets(reader: Reader, installation_id: str) -> bytes | None:
    """The clear JSON object of an installation's sensitive parameter values, or None."""

    def build() -> Select[Any]:
        i = _installations
        return select(i.c.secret_parameters).where(i.c.id == bindparam("id"))

    found = reader.scalar("installation.secret_parameters", build, {"id": installation_id})
    if found is None:
        return None
    return INSTALLATION_SECRETS.open(reader.keyring, [installation_id], bytes(found))


def add_installation(
    session: Session,
    row: InstallationRow,
    labels: Mapping[str, str],
    credential_sets: Sequence[str],
    parameter_sets: Sequence[str],
) -> None:
    """Inserts an installation; :class:`DuplicateKey` when its address is taken."""
    flush_new(session, row)
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
    shape = shape_of(flt)

    def where() -> list[ColumnElement[bool]]:
        return filters(_installations, _installation_labels, "installation_id", shape)

    return list_by_address(reader, "installations", _installations, where, flt, spec, {})


def count_installations(reader: Reader, flt: ListFilter) -> int:
    """How many installations match the filter."""
    shape = shape_of(flt)

    def where() -> list[ColumnElement[bool]]:
        return filters(_installations, _installation_labels, "installation_id", shape)

    return count(reader, "installations", KIND_INSTALLATION, _installations, where, flt, {})


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
