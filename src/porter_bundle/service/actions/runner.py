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
    RUN_STATE_SUCCEEDED,
    Run,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet
from porter_bundle.errors import FailedPrecondition, PorterBundleError, Unavailable
from porter_bundle.executor import (
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
)
from porter_bundle.service.actions.leases import LeaseKeeper
from porter_bundle.service.actions.outputs import collect_outputs
from porter_bundle.service.actions.planning import find_set
from porter_bundle.service.actions.settings import ActionSettings, LeaseSettings
from porter_bundle.service.actions.takeover import Takeovers
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

    async def wait_idle(self) -> None:
        """Waits until no run of this process is active (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

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
        try:
            async with self._slots:
                started = await self._blocking.run(self._runs.start, run_id, self.lease)
                if started is None:  # canceled while it waited for a slot
                    return
                self._observers.emit(RunEvent(Kind.STARTED, run_id, started))
                executor = await self.executor()
                masked = redactor.stream()

                async def on_log(chunk: bytes) -> None:
                    safe = masked.feed(chunk)
                    if safe:
                        await self._blocking.run(self._runs.append_log, run_id, safe, self.lease)

                result = await executor.execute(prepared.spec, on_log)
                if rest := masked.flush():
                    await self._blocking.run(self._runs.append_log, run_id, rest, self.lease)
            await self._complete(run_id, prepared.bundle, prepared.action, result, redactor)
        except asyncio.CancelledError:
            raise  # server shutdown: the container goes on; recover() finishes the run later
        except LeaseLost as exc:
            log.warning("run %s: %s; leaving it", run_id, exc.message)
        except Unavailable as exc:
            message = redactor.text(exc.message)
            await self._end(run_id, RUN_STATE_FAILED, message, cause="engine_unavailable")
        except ExecutorUnavailable as exc:
            self._observers.error("executor", "unavailable")
            message = redactor.text(f"lost contact with the container engine: {exc}")
            await self._end(run_id, RUN_STATE_FAILED, message, cause="engine_unavailable")
        except Exception:
            incident = secrets.token_hex(6)
            log.exception("run %s failed unexpectedly (incident %s)", run_id, incident)
            message = f"internal error (incident {incident})"
            await self._end(run_id, RUN_STATE_FAILED, message, incident=incident, cause="internal")
        finally:
            self._canceled.discard(run_id)
            unregister(run_id)

    async def _recover_run(
        self, executor: Executor, run: Run, previous_owner: str | None = None
    ) -> None:
        try:
            result = await executor.recover(run.id)
            if result is None and run.state == RUN_STATE_PENDING:
                await self._start_again(run)
                return
            if result is None:
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
            # Its sensitive parameters are masked; its credentials as far as they resolve now.
            redactor = await self._blocking.run(self._stored_redactor, run)
            register(run.id, redactor)  # log lines about it are masked too
            self._observers.emit(RunEvent(Kind.RECOVERED, run.id, run))
            if result.logs:
                # The container's whole log: what the stored log lacks is what came after
                # it. Masks keep lengths, so the stored length is the offset to go on from.
                stored = await self._blocking.run(self._runs.log_length, run.id)
                rest = redactor.data(result.logs)[stored:]
                if rest:
                    await self._blocking.run(self._runs.append_log, run.id, rest, self.lease)
            bundle = await self._blocking.run(self._bundles.document, run.bundle_digest) or {}
            action = action_name(run)
            await self._complete(run.id, bundle, action, result, redactor)
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:
            log.warning("run %s: %s; leaving it", run.id, exc.message)
        except Exception:
            log.exception("could not recover run %s", run.id)
        finally:
            unregister(run.id)

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
            await self._blocking.run(self._mask_stored_log, run_id, redactor)
        kind, cause = None, ""
        stored = await self._blocking.run(self._runs.current, run_id)
        # `canceling` stored: CancelRun reached this run through another process too.
        if result.canceled or run_id in self._canceled or (stored is not None and stored.canceling):
            state, message = RUN_STATE_CANCELED, "canceled"
        elif result.timed_out:
            kind, cause = Kind.TIMED_OUT, "timeout"
            state, message = (
                RUN_STATE_FAILED,
                f"timed out after {self._settings.run_timeout_seconds:g}s",
            )
        elif result.error:
            state, message, cause = RUN_STATE_FAILED, result.error, "container_error"
            self._observers.error("executor", "refused")
        elif result.exit_code != 0:
            cause = "exit_code"
            state, message = (
                RUN_STATE_FAILED,
                f"the invocation image exited with status {result.exit_code}",
            )
        elif missing:
            state, message, cause = RUN_STATE_FAILED, "; ".join(missing), "missing_outputs"
        else:
            state, message = RUN_STATE_SUCCEEDED, ""
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
        run = await self._blocking.run(
            self._finish_quietly, run_id, state, message, outputs, image_digest
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
