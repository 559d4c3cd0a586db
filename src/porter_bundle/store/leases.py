"""Queries of run leases: which replica executes a run, until when (see
:mod:`porter_bundle.service.actions.leases`). Times are Unix seconds from the caller's clock.

Claims lock the rows they take with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas
sweeping at the same moment take disjoint runs and never wait for each other; SQLite has one
writer at a time already (``BEGIN IMMEDIATE``) and ignores the clause.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, text, update
from sqlmodel import Session

from porter_bundle.store.models import ACTIVE_RUN_PREDICATE, RunRow, table_of

_runs = table_of(RunRow)
PENDING_STATE = 1
"""RUN_STATE_PENDING (the store knows states only as numbers)."""


@dataclass(frozen=True)
class Claimed:
    """A run a replica took over: its stored message and the owner it had before."""

    doc: bytes
    previous_owner: str | None


def lock_run_owner(session: Session, run_id: str) -> tuple[bool, str | None]:
    """(whether the run exists, its owner), its row locked until commit on PostgreSQL."""
    found = session.execute(
        select(_runs.c.owner).where(_runs.c.id == run_id).with_for_update()
    ).first()
    return (False, None) if found is None else (True, found[0])


def renew_leases(
    session: Session, owner: str, until: float, run_ids: Collection[str]
) -> dict[str, tuple[str | None, bytes]]:
    """Extends the lease of every active run ``owner`` holds to ``until``; returns, for each of
    ``run_ids`` still stored, (its owner now, its stored message)."""
    session.execute(
        update(_runs)
        .where(_runs.c.owner == owner, text(ACTIVE_RUN_PREDICATE))
        .values(lease_expires_at=until)
    )
    if not run_ids:
        return {}
    rows = session.execute(
        select(_runs.c.id, _runs.c.owner, _runs.c.doc).where(_runs.c.id.in_(list(run_ids)))
    )
    return {r[0]: (r[1], bytes(r[2])) for r in rows}


def claim_runs(
    session: Session,
    owner: str,
    now: float,
    until: float,
    *,
    every_active: bool = False,
    own: bool = False,
    max_pending: int,
    limit: int = 100,
) -> list[Claimed]:
    """Takes over active runs whose lease expired or that nobody owns (with ``own``: those
    ``owner`` holds too, for a replica restarted with the same id); ``every_active``: every active run whatever
    its lease (one process on its own SQLite file). RUNNING runs are all taken (up to
    ``limit``), PENDING ones up to ``max_pending``; each taken run is leased to ``owner``
    until ``until``."""
    stmt = select(_runs.c.id, _runs.c.owner, _runs.c.state, _runs.c.doc).where(
        text(ACTIVE_RUN_PREDICATE)
    )
    if not every_active:
        taken_over = or_(_runs.c.owner.is_(None), _runs.c.lease_expires_at < now)
        if own:
            taken_over = or_(taken_over, _runs.c.owner == owner)
        else:
            taken_over = and_(taken_over, or_(_runs.c.owner.is_(None), _runs.c.owner != owner))
        stmt = stmt.where(taken_over)
    rows = session.execute(
        stmt.order_by(_runs.c.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    taken: list[Claimed] = []
    ids: list[str] = []
    pending = 0
    for run_id, previous, state, doc in rows:
        if state == PENDING_STATE:
            if pending >= max_pending:
                continue
            pending += 1
        ids.append(run_id)
        taken.append(Claimed(bytes(doc), previous))
    if ids:
        session.execute(
            update(_runs).where(_runs.c.id.in_(ids)).values(owner=owner, lease_expires_at=until)
        )
    return taken


def release_pending(session: Session, owner: str, run_ids: Collection[str]) -> list[str]:
    """Hands back those of ``run_ids`` that ``owner`` holds and that are still PENDING (no
    owner, lease expired: the next replica that sweeps starts them); returns their IDs."""
    if not run_ids:
        return []
    cond = and_(
        _runs.c.id.in_(list(run_ids)),
        _runs.c.owner == owner,
        _runs.c.state == PENDING_STATE,
    )
    released = [r[0] for r in session.execute(select(_runs.c.id).where(cond).with_for_update())]
    if released:
        session.execute(
            update(_runs).where(_runs.c.id.in_(released)).values(owner=None, lease_expires_at=0.0)
        )
    return released
