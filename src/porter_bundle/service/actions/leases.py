"""Run ownership across replicas: leases, their heartbeat, the sweeper and the drain.

Several replicas may share one PostgreSQL database. The replica that accepts an action
records its run PENDING and *owns* it: the run's row names the replica (``owner``, the
``replica_id`` setting) and a lease (``lease_expires_at``). The owner's heartbeat renews the
leases of all its active runs every ``lease_renew_seconds``; it alone writes the run (start,
log, finish: each write checks the owner under the row's lock, see RunRecorder), so a run's
log is written once.

* **Taking over.** At start-up and on every heartbeat (the sweeper) a replica takes over the
  active runs whose lease expired, or that nobody holds (handed back at a drain), claiming
  them with ``SELECT ... FOR UPDATE SKIP LOCKED`` so that concurrent sweepers take disjoint
  runs. A RUNNING run is re-attached when this replica's engine sees its container, else it
  FAILS saying which replica stopped renewing it; a PENDING one is started here (as many as
  this replica has free slots).
* **Lost lease.** When the heartbeat finds that a run it executes is held by someone else now
  (it could not renew in time: a pause, the database out of reach), the replica stops its
  container and writes nothing more about the run.
* **Cancel.** CancelRun may reach any replica: it marks the run ``canceling`` in the store;
  the owner's heartbeat sees the mark and stops the container.
* **Drain** (SIGTERM): the replica stops taking runs over, hands back the PENDING runs it holds
  (another replica starts them at its next sweep) and, on PostgreSQL, lets its RUNNING runs
  finish within the grace period; those still running then keep their container and their
  lease, which expires unless the replica comes back with the same replica id first.
* **SQLite** has one process per file: at start-up it takes over every active run whatever
  its lease (as before leases existed); the heartbeat runs all the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from porter.bundle.v1.run_pb2 import Run
from porter_bundle.errors import PorterBundleError
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.runs import ACTIVE_STATES, Lease, RunService

log = logging.getLogger(__name__)


class LeaseKeeper:
    """The heartbeat of one replica's leases, and its sweeper of expired ones."""

    def __init__(
        self,
        *,
        runs: RunService,
        lease: Lease,
        renew_seconds: float,
        blocking: Blocking,
        local: Callable[[], Collection[str]],
        on_lost: Callable[[str], None],
        on_canceling: Callable[[Run], None],
        sweep: Callable[[], Awaitable[None]],
    ) -> None:
        """``local``: the runs this replica is executing now; ``on_lost(run_id)`` when one is
        held by another replica now; ``on_canceling(run)`` when one was marked canceling
        (by any replica); ``sweep()`` takes over expired runs (not while draining)."""
        self._runs = runs
        self._lease = lease
        self._renew_seconds = renew_seconds
        self._blocking = blocking
        self._local = local
        self._on_lost = on_lost
        self._on_canceling = on_canceling
        self._sweep = sweep
        self._task: asyncio.Task[None] | None = None
        self._permanent = False
        self.draining = False
        """Set at a drain: the sweeper takes nothing over any more."""

    def start(self, *, permanent: bool = False) -> None:
        """Starts the heartbeat (on the event loop); nothing when it runs already. A server
        starts it ``permanent`` (recover): it sweeps for other replicas' expired runs until
        closed. Else it beats while this process executes runs (:meth:`idle` stops it)."""
        self._permanent = self._permanent or permanent
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._beat(), name=f"leases-{self._lease.owner}"
            )

    def idle(self) -> None:
        """No run executes here any more: a heartbeat that is not permanent stops."""
        if not self._permanent and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        """Stops the heartbeat (the leases then expire unless another process renews them)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._renew_seconds)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except PorterBundleError as exc:  # the database is unavailable, say: next beat
                log.warning("could not renew the run leases of %s: %s", self._lease.owner, exc)
            except Exception:
                log.exception("could not renew the run leases of %s", self._lease.owner)

    async def tick(self) -> None:
        """Renews the leases, acts on lost and canceling runs, then sweeps (tests call it)."""
        local = list(self._local())
        found = await self._blocking.run(self._runs.renew, self._lease, local)
        for run_id in local:
            if run_id not in found:
                continue  # deleted with its installation: its task ends by itself
            owner, run = found[run_id]
            if run.state not in ACTIVE_STATES:
                continue
            if owner != self._lease.owner:
                log.warning(
                    "run %s is held by %s now: %s stops executing it",
                    run_id,
                    owner or "nobody",
                    self._lease.owner,
                )
                self._on_lost(run_id)
            elif run.canceling:
                self._on_canceling(run)
        if not self.draining:
            await self._sweep()


__all__ = ["LeaseKeeper"]
