"""Taking runs over and handing them back, the runner's side of :mod:`.leases`: the recovery at
start-up (also when the engine answers only later), the sweeper's claims, a run lost to another
replica, a cancel that reached another replica, the drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from porter.bundle.v1.run_pb2 import RUN_STATE_FAILED, Run
from porter_bundle.errors import Unavailable
from porter_bundle.executor import Executor
from porter_bundle.service.actions.ending import RunEnding
from porter_bundle.service.actions.leases import LeaseKeeper
from porter_bundle.service.actions.outages import backoff
from porter_bundle.service.actions.settings import ActionSettings
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.observe import Kind, Observers, RunEvent
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
    _observers: Observers
    _ending: RunEnding
    _waiting: asyncio.Task[None] | None
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

    async def recover(self) -> None:
        """At start-up: finishes the active runs no live replica holds (on SQLite, one process
        per file: every active run), removes orphan containers, then keeps the leases. When
        the engine does not answer, the runs wait for it (see :meth:`_recover_when_back`)."""
        try:
            executor = await self.executor()
        except Unavailable as exc:
            if self._runs.single_process:  # nobody else can finish them: wait for the engine
                self._waiting = asyncio.get_running_loop().create_task(
                    self._recover_when_back(exc), name="recovery"
                )
                return
            self.leases.start(permanent=True)  # a replica reaching its engine takes them over
            return
        await self._recover_with(executor)

    async def _recover_with(self, executor: Executor) -> None:
        single = self._runs.single_process
        for t in await self._claim(every_active=single, own=True):
            self._take_over(executor, t)
        active_ids = {r.id for r in await self._blocking.run(self._runs.active)}
        for orphan in await executor.orphans():
            if orphan not in active_ids:
                await executor.recover(orphan)
                self._observers.emit(RunEvent(Kind.ORPHAN_REMOVED, orphan))
        self.leases.start(permanent=True)

    async def _recover_when_back(self, first: Unavailable) -> None:
        """The engine did not answer at start-up (one process per database): the active runs
        keep their state while it is tried again with backoff for ``engine_retry_seconds``,
        then recovered as usual; they FAIL only if it stayed unreachable that long."""
        retry = self._settings.engine_retry_seconds
        log.warning("recovery waits for the container engine (up to %gs): %s", retry, first.message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry
        waits = backoff()
        last = first
        while loop.time() < deadline:
            await asyncio.sleep(min(next(waits), max(0.0, deadline - loop.time())))
            try:
                await self.check_engine()
                executor = await self.executor()
            except Unavailable as exc:
                last = exc
                continue
            log.info("the container engine answers: recovering the runs left active")
            await self._recover_with(executor)
            return
        for t in await self._claim(every_active=True):
            if t.run.id in self._tasks:
                continue
            await self._ending.end(
                t.run.id,
                RUN_STATE_FAILED,
                f"the server restarted and could not reach the container engine for {retry:g}s: "
                f"{last.message}",
                kind=Kind.RECOVERY_FAILED,
            )
        self.leases.start(permanent=True)

    def _take_over(self, executor: Executor, taken: TakenOver) -> None:
        run = taken.run
        if run.id in self._tasks:  # taken over already (the sweeper and a late recovery)
            return
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
