"""Taking runs over and handing them back, the runner's side of :mod:`.leases`: the sweeper's
claims, a run lost to another replica, a cancel that reached another replica, the drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from porter.bundle.v1.run_pb2 import Run
from porter_bundle.errors import Unavailable
from porter_bundle.executor import Executor
from porter_bundle.service.actions.leases import LeaseKeeper
from porter_bundle.service.actions.settings import ActionSettings
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.runs import Lease, RunService, TakenOver

log = logging.getLogger(__name__)


class Takeovers:
    """Mixed into the Runner, whose state and run tasks it uses (declared here)."""

    _tasks: dict[str, asyncio.Task[None]]
    _canceled: set[str]
    _settings: ActionSettings
    _blocking: Blocking
    _runs: RunService
    _executor_instance: Executor | None
    lease: Lease
    leases: LeaseKeeper

    def _spawn(self, run_id: str, work: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    def _start_stopping(self, executor: Executor, run_id: str) -> None:
        raise NotImplementedError

    async def _recover_run(
        self, executor: Executor, run: Run, previous_owner: str | None = None
    ) -> None:
        raise NotImplementedError

    async def check_engine(self) -> None:
        raise NotImplementedError

    async def executor(self) -> Executor:
        raise NotImplementedError

    async def _claim(self, *, every_active: bool = False, own: bool = False) -> list[TakenOver]:
        """Takes over runs (see RunLeases.claim): PENDING ones as many as there are free slots,
        every one with ``every_active``."""
        free = max(0, self._settings.max_concurrent_runs - len(self._tasks))
        return await self._blocking.run(
            lambda: self._runs.claim(
                self.lease,
                max_pending=1_000_000 if every_active else free,
                every_active=every_active,
                own=own,
            )
        )

    def _take_over(self, executor: Executor, taken: TakenOver) -> None:
        run = taken.run
        self._spawn(run.id, self._recover_run(executor, run, taken.previous_owner))
        if run.canceling:  # CancelRun was called before the take-over: finish stopping it
            self._canceled.add(run.id)
            self._start_stopping(executor, run.id)

    async def _sweep(self) -> None:
        """Takes over the runs whose lease expired (the heartbeat calls it), when this
        replica's engine answers: a run is re-attached only by a replica that can reach it."""
        try:
            await self.check_engine()
            executor = await self.executor()
        except Unavailable:
            return
        for taken in await self._claim():
            log.info(
                "run %s: taken over by %s from %s",
                taken.run.id,
                self.lease.owner,
                taken.previous_owner or "nobody",
            )
            self._take_over(executor, taken)

    def _lost(self, run_id: str) -> None:
        """Another replica holds the run now: stop its container here; its task's writes are
        refused (LeaseLost) and it ends without touching the run."""
        if self._executor_instance is not None:
            self._start_stopping(self._executor_instance, run_id)

    def _canceling_elsewhere(self, run: Run) -> None:
        """CancelRun reached another replica: stop the container here, where it runs."""
        if run.id not in self._canceled and self._executor_instance is not None:
            self._canceled.add(run.id)
            self._start_stopping(self._executor_instance, run.id)

    async def drain(self, grace: float) -> None:
        """SIGTERM: stops taking runs over, hands back the PENDING runs held here (another
        replica starts them), and on PostgreSQL waits up to ``grace`` seconds for the
        running ones to end (the rest keep their lease, see :mod:`.leases`)."""
        self.leases.draining = True
        released = await self._blocking.run(
            self._runs.release_pending, self.lease, list(self._tasks)
        )
        for run_id in released:
            task = self._tasks.get(run_id)
            if task is not None:
                task.cancel()
        if released:
            log.info("handed back %d pending runs: %s", len(released), ", ".join(released))
        running = list(self._tasks.values())
        if running and not self._runs.single_process and grace > 0:
            await asyncio.wait(running, timeout=grace)


__all__ = ["Takeovers"]
