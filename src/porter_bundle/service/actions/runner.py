"""The background runner: runs recorded runs through the :class:`Executor`, at most
``max_concurrent_runs`` at once, cancels them, completes them with their outputs, and takes
over the runs no live replica holds (after a restart, or another replica's lease expired:
see :mod:`.leases`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    Run,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet
from porter_bundle.errors import FailedPrecondition, PorterBundleError, Unavailable
from porter_bundle.executor import (
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
    PhaseHook,
    reporting_phases,
)
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
from porter_bundle.service.actions.outputs import collect_outputs
from porter_bundle.service.actions.planning import find_set
from porter_bundle.service.actions.settings import ActionSettings, LeaseSettings
from porter_bundle.service.actions.takeover import Takeovers
from porter_bundle.service.actions.verdict import verdict
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.inputs import ResolvedInputs, render
from porter_bundle.service.observe import Kind, Observers, RunEvent
from porter_bundle.service.redact import Redactor, register, unregister
from porter_bundle.service.runs import (
    Lease,
    LeaseLost,
    OutputValue,
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


def inputs_redactor(inputs: ResolvedInputs) -> Redactor:
    """Masks a run's credential values and sensitive parameter values."""
    sensitive = (render(inputs.parameters[n]) for n in inputs.sensitive)
    return Redactor([*inputs.credentials.values(), *sensitive])


def engine_unavailable(exc: ExecutorUnavailable) -> Unavailable:
    """The executor's failure to reach its engine as the domain error (the message names the
    engine and says what failed; it never holds a secret)."""
    return Unavailable(str(exc), reason="CONTAINER_ENGINE_UNAVAILABLE")


class Runner(Takeovers):
    """Runs, cancels, completes and recovers runs on the event loop (blocking calls on the pool);
    taking runs over from other replicas and the drain are :class:`.takeover.Takeovers`'."""

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

    async def recover(self) -> None:
        """At start-up: finishes the active runs no live replica holds (on SQLite, one process
        per file: every active run), removes orphan containers, then keeps the leases."""
        single = self._runs.single_process
        try:
            executor = await self.executor()
        except Unavailable as exc:
            if single:  # nobody else can finish them
                taken = await self._claim(every_active=True)
                for t in taken:
                    await self._end(
                        t.run.id,
                        RUN_STATE_FAILED,
                        "the server restarted and could not reach the container engine: "
                        f"{exc.message}",
                        kind=Kind.RECOVERY_FAILED,
                    )
            self.leases.start(permanent=True)  # a replica reaching its engine takes them over
            return
        for t in await self._claim(every_active=single, own=True):
            self._take_over(executor, t)
        active_ids = {r.id for r in await self._blocking.run(self._runs.active)}
        for orphan in await executor.orphans():
            if orphan not in active_ids:
                await executor.recover(orphan)
                self._observers.emit(RunEvent(Kind.ORPHAN_REMOVED, orphan))
        self.leases.start(permanent=True)

    async def close(self) -> None:
        """Stops watching runs (their containers keep going; recover() picks them up next start)."""
        await self.leases.close()
        tasks = [*self._tasks.values(), *self._stopping.values()]
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
                    await self._end_lost(run_id, outcome, redactor)
                    return
                await live.flush()
            if live.broken:
                await rest_of_log(self._runs, self._blocking, run_id, outcome, redactor, self.lease)
            await self._complete(run_id, prepared.bundle, prepared.action, outcome, redactor)
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
            await self._end(run_id, RUN_STATE_FAILED, message, cause=cause)
        except Exception:
            incident = secrets.token_hex(6)
            log.exception("run %s failed unexpectedly (incident %s)", run_id, incident)
            message = f"internal error (incident {incident})"
            await self._end(run_id, RUN_STATE_FAILED, message, incident=incident, cause="internal")
        finally:
            self._canceled.discard(run_id)
            unregister(run_id)
            if kept and executor is not None:
                await self._release(executor, run_id)

    async def _end_lost(self, run_id: str, lost: Lost, redactor: Redactor) -> None:
        """Ends a run whose container could not be re-attached (see :func:`reattach`)."""
        kind, cause = (
            (Kind.TIMED_OUT, "timeout") if lost.timed_out else (None, "engine_unavailable")
        )
        await self._end(
            run_id, RUN_STATE_FAILED, redactor.text(lost.message), kind=kind, cause=cause
        )

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
                await self._end(run.id, RUN_STATE_FAILED, why, kind=Kind.RECOVERY_FAILED)
                return
            kept = True
            # Its sensitive parameters are masked; its credentials as far as they resolve now.
            redactor = await self._blocking.run(self._stored_redactor, run)
            register(run.id, redactor)  # log lines about it are masked too
            if isinstance(outcome, Lost):
                await self._end_lost(run.id, outcome, redactor)
                return
            self._observers.emit(RunEvent(Kind.RECOVERED, run.id, run))
            await rest_of_log(self._runs, self._blocking, run.id, outcome, redactor, self.lease)
            bundle = await self._blocking.run(self._bundles.document, run.bundle_digest) or {}
            action = action_name(run)
            await self._complete(run.id, bundle, action, outcome, redactor)
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
            await self._end(run.id, RUN_STATE_FAILED, message, kind=Kind.RECOVERY_FAILED)
            return
        log.info("starting run %s, accepted before the restart", run.id)
        await self._run(prepared)

    def _stored_redactor(self, run: Run) -> Redactor:
        """Masks what a run recorded before a restart used: its sensitive parameter values
        (stored with the run) and, as far as they resolve again now, its credentials (from
        its credential sets; command sources are not run again)."""
        used = self._runs.run_parameters(run.id)
        secrets = [render(used[n]) for n in run.sensitive_parameters if n in used]
        for set_name in run.credential_sets:
            entries = find_set(self._credential_sets, run.namespace, set_name, "credentials")
            for entry in entries or ():
                if entry.source.WhichOneof("kind") == "command":
                    continue
                try:
                    value = self._resolver.resolve(
                        f"credential {entry.name!r}", entry.source, run.namespace
                    )
                except FailedPrecondition:
                    continue
                secrets.append(render(value))
        return Redactor(secrets)

    async def _complete(
        self,
        run_id: str,
        bundle: dict[str, Any],
        action: str,
        result: ContainerResult,
        redactor: Redactor,
    ) -> None:
        values, missing = collect_outputs(bundle, action, result.outputs)
        produced = [render(v.value) for v in values if v.sensitive]
        if produced:  # the image may have printed the sensitive outputs it wrote
            redactor = redactor.plus(produced)
            what = f"the masked log of run {run_id}"
            await durably(self._blocking, what, self._mask_stored_log, run_id, redactor)
        stored = await self._blocking.run(self._runs.current, run_id)
        # `canceling` stored: CancelRun reached this run through another process too.
        canceled = run_id in self._canceled or (stored is not None and stored.canceling)
        state, message, kind, cause = verdict(
            result, missing, canceled, self._settings.run_timeout_seconds
        )
        if cause == "container_error":
            self._observers.error("executor", "refused")
        await self._end(
            run_id,
            state,
            redactor.text(message),
            values,
            kind=kind,
            cause=cause,
            image_digest=result.image_digest,
        )

    def _mask_stored_log(self, run_id: str, redactor: Redactor) -> None:
        """Masks, in place and keeping every offset, values that became secret only when
        the run ended (its sensitive outputs). A live follower may have seen them already:
        nobody could know them as secrets before the image wrote them as outputs."""
        self._runs.mask_log(run_id, redactor.data, self.lease)

    async def _end(
        self,
        run_id: str,
        state: int,
        message: str,
        outputs: Sequence[OutputValue] = (),
        *,
        kind: Kind | None = None,
        incident: str = "",
        cause: str = "",
        image_digest: str = "",
    ) -> None:
        """Finishes the run and emits ``kind`` (by default: canceled or finished, by state)."""
        # Retried until stored (a full disk, a restarting database): the run's container is
        # kept until then, so it is never RUNNING without one.
        run = await durably(
            self._blocking,
            f"the end of run {run_id}",
            self._finish_quietly,
            run_id,
            state,
            message,
            outputs,
            image_digest,
        )
        if run is None:
            return
        if kind is None:
            kind = Kind.CANCELED if state == RUN_STATE_CANCELED else Kind.FINISHED
        if kind is Kind.RECOVERY_FAILED:
            cause = "recovery"
        self._observers.emit(RunEvent(kind, run_id, run, message, incident, cause))

    def _finish_quietly(
        self,
        run_id: str,
        state: int,
        message: str,
        outputs: Sequence[OutputValue] = (),
        image_digest: str = "",
    ) -> Run | None:
        try:
            return self._runs.finish(
                run_id, state, message, outputs, image_digest=image_digest, lease=self.lease
            )
        except LeaseLost as exc:
            log.warning("run %s: %s; not ending it %s", run_id, exc.message, state)
            return None
        except FailedPrecondition:
            log.info("run %s had already ended", run_id)
            return None


__all__ = ["Prepared", "Runner", "inputs_redactor"]
