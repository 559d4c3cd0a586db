"""Queries of CNAB claims (one per run) and claim results (the states each run reached).

Claims are listed across installations newest first, keyed by the run ID: a ULID, so a
creation time range is a range of IDs (see :func:`id_floor`) and needs no date column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, false, func, or_, select
from sqlmodel import Session
from ulid import ULID

from porter_bundle.store.errors import flush_new
from porter_bundle.store.listing import PageSpec, page_params, paged
from porter_bundle.store.models import (
    ClaimResultRow,
    ClaimRow,
    InstallationRow,
    RunRow,
    table_of,
)
from porter_bundle.store.queries import Reader

_claims = table_of(ClaimRow)
_results = table_of(ClaimResultRow)
_runs = table_of(RunRow)
_installations = table_of(InstallationRow)


@dataclass(frozen=True)
class ClaimFilter:
    """Filters of ListClaims. ``namespace`` None: every namespace (of ``visible``, None = all)."""

    namespace: str | None = ""
    visible: frozenset[str] | None = None
    installation: str = ""
    action: str = ""
    exclude_action: str = ""
    """Leave out claims of this action (e.g. the status action's own runs)."""
    state: int = 0
    min_id: str = ""
    """Only runs with an ID at or above this (created at or after its time)."""
    max_id: str = ""
    """Only runs with an ID below this (created before its time)."""


@dataclass(frozen=True)
class ClaimRecord:
    """A stored claim: its run, action name, revision and document (None: not stored)."""

    run_doc: bytes
    action: str | None
    revision: str | None
    doc: str | None


def id_floor(epoch_ms: int) -> str:
    """The smallest ULID of a millisecond: IDs minted at or after it sort at or above it."""
    return str(ULID.from_bytes(max(0, epoch_ms).to_bytes(6, "big") + bytes(10)))


def add_claim(session: Session, row: ClaimRow) -> None:
    """Inserts the claim of a run (in the transaction that creates the run)."""
    flush_new(session, row)


def add_claim_result(session: Session, row: ClaimResultRow) -> None:
    """Inserts a claim result (in the transaction that changes the run's state)."""
    flush_new(session, row)


def current_revision(session: Session, installation_id: str) -> str | None:
    """The revision of the installation's most recent claim, or None when it has none."""
    stmt = (
        select(_claims.c.revision)
        .join(_runs, _runs.c.id == _claims.c.run_id)
        .where(_runs.c.installation_id == installation_id)
        .order_by(_runs.c.id.desc())
        .limit(1)
    )
    found = session.execute(stmt).scalar_one_or_none()
    return None if found is None else str(found)


def _shape(flt: ClaimFilter) -> tuple[Any, ...]:
    visible = -1 if flt.visible is None else len(flt.visible)
    return (
        flt.namespace is not None,
        visible,
        bool(flt.installation),
        bool(flt.action),
        bool(flt.exclude_action),
        bool(flt.state),
        bool(flt.min_id),
        bool(flt.max_id),
    )


def _where(shape: tuple[Any, ...]) -> list[ColumnElement[bool]]:
    has_ns, n_visible, has_inst, has_action, has_exclude, has_state, has_min, has_max = shape
    i, r = _installations, _runs
    where: list[ColumnElement[bool]] = []
    if has_ns:
        where.append(i.c.namespace == bindparam("ns"))
    if n_visible == 0:
        where.append(false())
    elif n_visible > 0:
        where.append(i.c.namespace.in_([bindparam(f"vis{n}") for n in range(n_visible)]))
    if has_inst:
        where.append(i.c.name == bindparam("inst_name"))
    if has_action:
        where.append(_claims.c.action == bindparam("action"))
    if has_exclude:
        # A run without a claim row (none since migration 0007) is never left out.
        where.append(
            or_(_claims.c.action.is_(None), _claims.c.action != bindparam("exclude_action"))
        )
    if has_state:
        where.append(r.c.state == bindparam("state"))
    if has_min:
        where.append(r.c.id >= bindparam("min_id"))
    if has_max:
        where.append(r.c.id < bindparam("max_id"))
    return where


def _params(flt: ClaimFilter) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ns": flt.namespace,
        "inst_name": flt.installation,
        "action": flt.action,
        "exclude_action": flt.exclude_action,
        "state": flt.state,
        "min_id": flt.min_id,
        "max_id": flt.max_id,
    }
    for n, namespace in enumerate(sorted(flt.visible or ())):
        params[f"vis{n}"] = namespace
    return params


def _joined() -> Any:
    return _runs.join(_installations, _installations.c.id == _runs.c.installation_id).outerjoin(
        _claims, _claims.c.run_id == _runs.c.id
    )


def list_claims(
    reader: Reader, flt: ClaimFilter, spec: PageSpec
) -> tuple[list[ClaimRecord], str | None]:
    """A page of claims, newest first, and the run ID to continue after (None: last page)."""
    shape = _shape(flt)

    def build() -> Select[Any]:
        stmt = (
            select(_runs.c.doc, _claims.c.action, _claims.c.revision, _claims.c.doc, _runs.c.id)
            .select_from(_joined())
            .where(*_where(shape))
        )
        if spec.after is not None:
            stmt = stmt.where(_runs.c.id < bindparam("after"))
        return paged(stmt.order_by(_runs.c.id.desc()), spec)

    params = {
        **_params(flt),
        **page_params(spec),
        "after": spec.after[0] if spec.after else None,
    }
    key = ("claims", shape, spec.after is not None, bool(spec.skip))
    rows = reader.rows(key, build, params)
    records = [_record(r) for r in rows[: spec.limit]]
    after = str(rows[spec.limit - 1][4]) if len(rows) > spec.limit else None
    return records, after


def count_claims(reader: Reader, flt: ClaimFilter) -> int:
    """How many claims match the filter."""
    shape = _shape(flt)

    def build() -> Select[Any]:
        return select(func.count()).select_from(_joined()).where(*_where(shape))

    return int(reader.scalar(("claims.count", shape), build, _params(flt)) or 0)


def get_claim(reader: Reader, run_id: str) -> ClaimRecord | None:
    """The claim of a run (any installation's), or None when there is no such run."""

    def build() -> Select[Any]:
        return (
            select(_runs.c.doc, _claims.c.action, _claims.c.revision, _claims.c.doc)
            .select_from(_runs.outerjoin(_claims, _claims.c.run_id == _runs.c.id))
            .where(_runs.c.id == bindparam("run"))
        )

    row = reader.first("claim", build, {"run": run_id})
    return None if row is None else _record(row)


def list_claim_results(reader: Reader, run_id: str) -> list[str]:
    """The result documents of a claim, oldest first."""

    def build() -> Select[Any]:
        return (
            select(_results.c.doc)
            .where(_results.c.run_id == bindparam("run"))
            .order_by(_results.c.id)
        )

    return [str(r[0]) for r in reader.rows("claim.results", build, {"run": run_id})]


def _record(row: Any) -> ClaimRecord:
    return ClaimRecord(
        bytes(row[0]),
        None if row[1] is None else str(row[1]),
        None if row[2] is None else str(row[2]),
        None if row[3] is None else str(row[3]),
    )
