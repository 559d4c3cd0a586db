"""Run leases, the service's side: which replica executes a run, renewed by its heartbeat,
taken over once expired, handed back at a drain (the rules: service.actions.leases)."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from porter.bundle.v1.run_pb2 import Run
from porter_bundle import store
from porter_bundle.service.runs.model import Lease
from porter_bundle.store import Database


@dataclass(frozen=True)
class TakenOver:
    """A run this replica now holds, and who held it before (None: nobody)."""

    run: Run
    previous_owner: str | None


class RunLeases:
    """Claims, renews and releases the leases of runs (one transaction each)."""

    _store: Database

    @property
    def single_process(self) -> bool:
        """Whether one process only uses the database (a SQLite file): it then takes over
        every active run at start-up, whatever their leases."""
        return self._store.is_sqlite

    def claim(
        self,
        lease: Lease,
        *,
        max_pending: int,
        every_active: bool = False,
        own: bool = False,
    ) -> list[TakenOver]:
        """Takes over the active runs whose lease expired or that nobody holds (``own``: also
        those ``lease``'s owner held, ``every_active``: all of them), PENDING ones up to
        ``max_pending``; they are leased to ``lease``'s owner from now on."""
        now = time.time()
        with self._store.write() as s:
            claimed = store.claim_runs(
                s,
                lease.owner,
                now,
                now + lease.seconds,
                every_active=every_active,
                own=own,
                max_pending=max_pending,
            )
        return [TakenOver(Run.FromString(c.doc), c.previous_owner) for c in claimed]

    def renew(self, lease: Lease, run_ids: Collection[str]) -> dict[str, tuple[str | None, Run]]:
        """Renews every lease ``lease``'s owner holds; for each of ``run_ids`` still stored,
        (its owner now, the run as stored)."""
        with self._store.write() as s:
            found = store.renew_leases(s, lease.owner, time.time() + lease.seconds, run_ids)
        return {k: (owner, Run.FromString(doc)) for k, (owner, doc) in found.items()}

    def release_pending(self, lease: Lease, run_ids: Collection[str]) -> list[str]:
        """Hands back those of ``run_ids`` that are still PENDING and held by ``lease``'s
        owner (any replica may then start them); returns their IDs."""
        with self._store.write() as s:
            return store.release_pending(s, lease.owner, run_ids)


__all__ = ["RunLeases", "TakenOver"]
