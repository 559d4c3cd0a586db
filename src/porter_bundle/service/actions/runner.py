"""The background runner: runs recorded runs through the :class:`Executor`, at most
``max_concurrent_runs`` at once, cancels them, completes them with their outputs, and takes
over the runs no live replica holds (after a restart, or another replica's lease expired:
see :mod:`.leases`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from porter.bundle.v1.run_pb2 import (
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    Run,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet
from porter_bundle.errors import PorterBundleError, Unavailable
from porter_bundle.executor import (
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
    PhaseHook,
    reporting_phases,
)
from porter_bundle.service.actions.ending import RunEnding
from porter_bundle.service.actions.leases import LeaseKeeper
from porter_bundle.service.actions.outages import (
    LiveLog,
    Lost,
    Reattach,
    durably,
    reattach,
    release,
    rest_of_log,
)
from porter_bundle.service.actions.redactors import stored_redactor
from porter_bundle.service.actions.settings import ActionSettings, LeaseSettings
from porter_bundle.service.actions.takeover import Takeovers
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.observe import Kind, Observers, RunEvent
from porter_bundle.service.redact import Redactor, register, unregister
from porter_bundle.service.runs import (
    Lease,
    LeaseLost,
    RunService,
    action_name,
)
from porter_bundle.service.sources import SourceResolver
from porter_bundle.service.value_sets import ValueSetService

log = logging.getLogger(__name__)

CLOSE_WAIT_SECONDS = 2.0
"""At shutdown, how long the run tasks may take to end once cancelled."""


@dataclass
class Prepared:
    """A recorded run and everything its background task needs."""

    run: Run
    spec: ContainerSpec
    bundle: dict[str, Any]
    action: str
    redactor: Redactor
    """Masks the run's secrets in its log, its message and log lines."""


def engine_unavailable(exc: ExecutorUnavailable) -> Unavailable:
    """The executor's failure to reach its engine as the domain error (the message names the
    engine and says what failed; it never holds a secret)."""
    return Unavailable(str(exc), reason="CONTAINER_ENGINE_UNAVAILABLE")


class Runner(Takeovers):
    """Runs, cancels, completes and recovers runs on the event loop (blocking calls on the pool);
    the recovery at start-up, taking runs over from other replicas and the drain are
    :class:`.takeover.Takeovers`'."""

    def __init__(
        self,
        *,
        runs: RunService,
        bundles: BundleService,
        credential_sets: ValueSetService[CredentialSet],
        resolver: SourceResolver,
        executor: Callable[[], Executor],
        settings: ActionSettings,
        leases: LeaseSettings,
        blocking: Blocking,
        prepare_again: Callable[[Run], Prepared],
        observers: Observers | None = None,
    ) -> None:
        """``prepare_again`` (blocking) prepares a recorded run anew (its inputs resolved
        again) for starting it after a restart; it raises a domain error when it cannot."""
        self._prepare_again = prepare_again
        self._runs = runs
        self._observers = observers or Observers()
        self._bundles = bundles
        self._credential_sets = credential_sets
        self._resolver = resolver
        self._executor_factory = executor
        self._executor_instance: Executor | None = None
        self._settings = settings
        self._blocking = blocking
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._canceled: set[str] = set()
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._waiting: asyncio.Task[None] | None = None
        """The start-up recovery waiting for an unreachable engine."""
        self.phase_hooks: Callable[[str], PhaseHook | None] | None = None
        """Given a run ID, what spans the steps of its container (tracing); None: nothing."""
        self._reattach = Reattach(
            runs=runs,
            blocking=blocking,
            run_timeout_seconds=settings.run_timeout_seconds,
            retry_seconds=settings.engine_retry_seconds,
            cancel_grace_seconds=settings.cancel_grace_seconds,
            canceled=self._canceled.__contains__,
        )
        self.lease = Lease(leases.replica_id, leases.run_lease_seconds)
        """This replica's hold on the runs it executes (see :mod:`.leases`)."""
        self._ending = RunEnding(
            runs=runs,
            blocking=blocking,
            observers=self._observers,
            lease=self.lease,
            canceled=self._canceled.__contains__,
            run_timeout_seconds=settings.run_timeout_seconds,
        )
        self.leases = LeaseKeeper(
            runs=runs,
            lease=self.lease,
            renew_seconds=leases.lease_renew_seconds,
            blocking=blocking,
            local=lambda: list(self._tasks),
            on_lost=self._lost,
            on_canceling=self._canceling_elsewhere,
            sweep=self._sweep,
        )

    async def executor(self) -> Executor:
        """The executor, created on first use; Unavailable when the engine cannot be reached."""
        if self._executor_instance is None:
            try:
                self._executor_instance = await self._blocking.run(self._executor_factory)
            except ExecutorUnavailable as exc:
                raise self._engine_failed(exc) from None
        return self._executor_instance

    def _engine_failed(self, exc: ExecutorUnavailable) -> Unavailable:
        """Tells the error observers and gives the domain error of an unreachable engine."""
        self._observers.error("executor", "unavailable")
        return engine_unavailable(exc)

    async def check_engine(self) -> None:
        """The engine answers now (a short ping); Unavailable naming it when it does not."""
        executor = await self.executor()
        try:
            await executor.ping()
        except ExecutorUnavailable as exc:
            raise self._engine_failed(exc) from None

    def start(self, prepared: Prepared) -> None:
        """Runs a recorded run (leased to this replica) in the background."""
        self._spawn(prepared.run.id, self._run(prepared))
        self.leases.start()

    async def cancel(self, run: Run) -> Run | None:
        """Cancels an active run and returns at once: the ended run when it had not started,
        else the run marked ``canceling`` while its container is stopped in the background
        (the run then ends CANCELED); None when it ended meanwhile."""
        self._canceled.add(run.id)
        if run.state == RUN_STATE_PENDING:
            ended = await self._blocking.run(
                self._runs.cancel_pending, run.id, "canceled before it started"
            )
            if ended is not None:
                self._observers.emit(RunEvent(Kind.CANCELED, run.id, ended, ended.message))
                return ended
        executor = await self.executor()  # Unavailable now, rather than a cancel that never acts
        marked = await self._blocking.run(self._runs.mark_canceling, run.id)
        if marked is None:
            return None
        self._start_stopping(executor, run.id)
        return marked

    def _start_stopping(self, executor: Executor, run_id: str) -> None:
        if run_id in self._stopping:
            return
        stopping = asyncio.get_running_loop().create_task(
            self._stop(executor, run_id), name=f"cancel-{run_id}"
        )
        self._stopping[run_id] = stopping
        stopping.add_done_callback(lambda _t: self._stopping.pop(run_id, None))

    async def _stop(self, executor: Executor, run_id: str) -> None:
        """Stops a canceled run's container: SIGTERM, SIGKILL after the grace. The run's own
        task (or another process's) then ends it CANCELED."""
        task = self._tasks.get(run_id)
        grace = self._settings.cancel_grace_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace + 60
        try:
            # The container may not exist yet (image pull): ask until it stops or the task ends.
            while loop.time() < deadline:
                stopped = await executor.cancel(run_id, grace)
                if task is None or task.done():
                    break
                done, _ = await asyncio.wait({task}, timeout=None if stopped else 0.5)
                if done:
                    break
        except asyncio.CancelledError:
            raise
        except ExecutorUnavailable as exc:
            log.warning("could not stop the container of canceled run %s: %s", run_id, exc)
        except Exception:
            log.exception("could not stop the container of canceled run %s", run_id)

    async def close(self) -> None:
        """Stops watching runs (their containers keep going; recover() picks them up next start)."""
        await self.leases.close()
        waiting = [self._waiting] if self._waiting is not None else []
        tasks = [*self._tasks.values(), *self._stopping.values(), *waiting]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task may be removing a container on an engine that does not answer.
            await asyncio.wait(tasks, timeout=CLOSE_WAIT_SECONDS)
        await self._settle()

    async def wait_idle(self) -> None:
        """Waits until no run of this process is active and the containers of ended runs
        are removed (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
        await self._settle()

    async def _settle(self) -> None:
        """The executor's cleanup after runs that ended (container removals), bounded: the
        engine may not answer; what is left is removed as orphans at the next start."""
        if self._executor_instance is not None:
            await self._executor_instance.settle(CLOSE_WAIT_SECONDS)

    def _spawn(self, run_id: str, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            work, name=f"run-{run_id}"
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._ended(run_id))

    def _ended(self, run_id: str) -> None:
        self._tasks.pop(run_id, None)
        if not self._tasks:
            self.leases.idle()

    async def _run(self, prepared: Prepared) -> None:
        run_id = prepared.run.id
        redactor = prepared.redactor
        register(run_id, redactor)
        executor: Executor | None = None
        kept = False  # a container of the run may exist: removed once the run's end is stored
        try:
            async with self._slots:
                what = f"the start of run {run_id}"
                started = await durably(self._blocking, what, self._runs.start, run_id, self.lease)
                if started is None:  # canceled while it waited for a slot
                    return
                self._observers.emit(RunEvent(Kind.STARTED, run_id, started))
                executor = await self.executor()
                live = LiveLog(self._runs, self._blocking, run_id, redactor, self.lease)
                outcome: ContainerResult | Lost
                try:
                    hooks = self.phase_hooks
                    with reporting_phases(hooks(run_id) if hooks is not None else None):
                        outcome = await executor.execute(prepared.spec, live.feed, keep=True)
                except ExecutorUnavailable as lost:  # the engine stopped answering
                    kept = True
                    self._observers.error("executor", "unavailable")
                    outcome = await reattach(
                        self._reattach, executor, started, lost, prepared.spec, live.feed
                    )
                    live.broken = True  # what it missed comes from the whole log
                kept = True
                if isinstance(outcome, Lost):
                    await self._ending.lost(run_id, outcome, redactor)
                    return
                await live.flush()
            if live.broken:
                await rest_of_log(self._runs, self._blocking, run_id, outcome, redactor, self.lease)
            await self._ending.complete(run_id, prepared.bundle, prepared.action, outcome, redactor)
        except asyncio.CancelledError:
            kept = False  # server shutdown: the container goes on; recover() finishes it later
            raise
        except LeaseLost as exc:
            kept = False  # another replica holds the run and its container now
            log.warning("run %s: %s; leaving it", run_id, exc.message)
        except Unavailable as exc:
            message = redactor.text(exc.message)
            engine = exc.reason == "CONTAINER_ENGINE_UNAVAILABLE"
            cause = "engine_unavailable" if engine else "internal"
            await self._ending.end(run_id, RUN_STATE_FAILED, message, cause=cause)
        except Exception:
            incident = secrets.token_hex(6)
            log.exception("run %s failed unexpectedly (incident %s)", run_id, incident)
            message = f"internal error (incident {incident})"
            await self._ending.end(
                run_id, RUN_STATE_FAILED, message, incident=incident, cause="internal"
            )
        finally:
            self._canceled.discard(run_id)
            unregister(run_id)
            if kept and executor is not None:
                await self._release(executor, run_id)

    async def _release(self, executor: Executor, run_id: str) -> None:
        await release(executor, run_id, self._settings.engine_retry_seconds)

    async def _recover_run(
        self, executor: Executor, run: Run, previous_owner: str | None = None
    ) -> None:
        kept = False
        try:
            outcome: ContainerResult | Lost | None
            try:
                outcome = await executor.recover(run.id, keep=True)
            except ExecutorUnavailable as lost:
                lost.started = True  # it may still run: wait for the engine, never start it twice
                outcome = await reattach(self._reattach, executor, run, lost)
            if outcome is None and run.state == RUN_STATE_PENDING:
                await self._start_again(run)
                return
            if outcome is None:
                why = "the run's container vanished while the server was down"
                if previous_owner not in (None, self.lease.owner) and not (
                    self._runs.single_process
                ):
                    why = (
                        f"replica {previous_owner} stopped renewing its lease on the run, and "
                        f"the container engine of replica {self.lease.owner}, which took it "
                        "over, does not have its container"
                    )
                await self._ending.end(run.id, RUN_STATE_FAILED, why, kind=Kind.RECOVERY_FAILED)
                return
            kept = True
            # Its sensitive parameters are masked; its credentials as far as they resolve now.
            redactor = await self._blocking.run(
                stored_redactor, self._runs, self._credential_sets, self._resolver, run
            )
            register(run.id, redactor)  # log lines about it are masked too
            if isinstance(outcome, Lost):
                await self._ending.lost(run.id, outcome, redactor)
                return
            self._observers.emit(RunEvent(Kind.RECOVERED, run.id, run))
            await rest_of_log(self._runs, self._blocking, run.id, outcome, redactor, self.lease)
            bundle = await self._blocking.run(self._bundles.document, run.bundle_digest) or {}
            action = action_name(run)
            await self._ending.complete(run.id, bundle, action, outcome, redactor)
        except asyncio.CancelledError:
            kept = False
            raise
        except LeaseLost as exc:
            kept = False  # another replica holds the run and its container now
            log.warning("run %s: %s; leaving it", run.id, exc.message)
        except Exception:
            kept = False  # the next start recovers it from its container
            log.exception("could not recover run %s", run.id)
        finally:
            unregister(run.id)
            if kept:
                await self._release(executor, run.id)

    async def _start_again(self, run: Run) -> None:
        """Starts a run the previous process accepted (PENDING) but never started: accepted
        work is not lost, and a retry with its request_id returns it as it runs."""
        try:
            prepared = await self._blocking.run(self._prepare_again, run)
        except PorterBundleError as exc:
            message = f"the server restarted before this run started and could not start it: {exc.message}"
            await self._ending.end(run.id, RUN_STATE_FAILED, message, kind=Kind.RECOVERY_FAILED)
            return
        log.info("starting run %s, accepted before the restart", run.id)
        await self._run(prepared)


__all__ = ["Prepared", "Runner"]
