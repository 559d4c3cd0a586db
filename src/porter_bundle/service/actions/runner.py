"""The background runner: runs recorded runs through the :class:`Executor`, at most
``max_concurrent_runs`` at once, cancels them, completes them with their outputs, and after a
restart finishes every run the previous process left active."""

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
from porter_bundle.errors import FailedPrecondition, Unavailable
from porter_bundle.executor import (
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
)
from porter_bundle.service.actions.outputs import collect_outputs
from porter_bundle.service.actions.planning import find_set
from porter_bundle.service.actions.settings import ActionSettings
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.inputs import ResolvedInputs, render
from porter_bundle.service.redact import Redactor, register, unregister
from porter_bundle.service.runs import OutputValue, RunService, action_name
from porter_bundle.service.sources import SourceResolver
from porter_bundle.service.value_sets import ValueSetService

log = logging.getLogger(__name__)


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


class Runner:
    """Runs, cancels, completes and recovers runs on the event loop (blocking calls on the pool)."""

    def __init__(
        self,
        *,
        runs: RunService,
        bundles: BundleService,
        credential_sets: ValueSetService[CredentialSet],
        resolver: SourceResolver,
        executor: Callable[[], Executor],
        settings: ActionSettings,
        blocking: Blocking,
    ) -> None:
        self._runs = runs
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

    async def executor(self) -> Executor:
        """The executor, created on first use; Unavailable when the engine cannot be reached."""
        if self._executor_instance is None:
            try:
                self._executor_instance = await self._blocking.run(self._executor_factory)
            except ExecutorUnavailable as exc:
                raise Unavailable(str(exc), reason="CONTAINER_ENGINE_UNAVAILABLE") from None
        return self._executor_instance

    def start(self, prepared: Prepared) -> None:
        """Runs a recorded run in the background."""
        self._spawn(prepared.run.id, self._run(prepared))

    async def cancel(self, run: Run) -> Run | None:
        """Cancels an active run and waits until it has ended (or the grace is well over);
        the ended run when it was canceled before it started."""
        self._canceled.add(run.id)
        if run.state == RUN_STATE_PENDING:
            ended = await self._blocking.run(
                self._runs.cancel_pending, run.id, "canceled before it started"
            )
            if ended is not None:
                return ended
        task = self._tasks.get(run.id)
        executor = await self.executor()
        grace = self._settings.cancel_grace_seconds
        deadline = asyncio.get_running_loop().time() + grace + 60
        # The container may not exist yet (image pull): keep asking until it stops or the task ends.
        while asyncio.get_running_loop().time() < deadline:
            stopped = await executor.cancel(run.id, grace)
            if task is None or task.done():
                break
            done, _ = await asyncio.wait({task}, timeout=None if stopped else 0.5)
            if done:
                break
        return None

    async def recover(self) -> None:
        """Finishes every run a previous process left PENDING or RUNNING and removes orphans."""
        active = await self._blocking.run(self._runs.active)
        try:
            executor = await self.executor()
        except Unavailable as exc:
            for run in active:
                await self._blocking.run(
                    self._finish_quietly,
                    run.id,
                    RUN_STATE_FAILED,
                    f"the server restarted and could not reach the container engine: {exc.message}",
                )
            return
        for run in active:
            self._spawn(run.id, self._recover_run(executor, run))
        active_ids = {r.id for r in active}
        for orphan in await executor.orphans():
            if orphan not in active_ids:
                log.info("removing leftover container of run %s", orphan)
                await executor.recover(orphan)

    async def close(self) -> None:
        """Stops watching runs (their containers keep going; recover() picks them up next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Waits until no run of this process is active (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    def _spawn(self, run_id: str, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            work, name=f"run-{run_id}"
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    async def _run(self, prepared: Prepared) -> None:
        run_id = prepared.run.id
        redactor = prepared.redactor
        register(run_id, redactor)
        try:
            async with self._slots:
                started = await self._blocking.run(self._runs.start, run_id)
                if started is None:  # canceled while it waited for a slot
                    return
                executor = await self.executor()
                masked = redactor.stream()

                async def on_log(chunk: bytes) -> None:
                    safe = masked.feed(chunk)
                    if safe:
                        await self._blocking.run(self._runs.append_log, run_id, safe)

                result = await executor.execute(prepared.spec, on_log)
                if rest := masked.flush():
                    await self._blocking.run(self._runs.append_log, run_id, rest)
            await self._complete(run_id, prepared.bundle, prepared.action, result, redactor)
        except asyncio.CancelledError:
            raise  # server shutdown: the container goes on; recover() finishes the run later
        except Unavailable as exc:
            message = redactor.text(exc.message)
            await self._blocking.run(self._finish_quietly, run_id, RUN_STATE_FAILED, message)
        except ExecutorUnavailable as exc:
            message = redactor.text(f"lost contact with the container engine: {exc}")
            await self._blocking.run(self._finish_quietly, run_id, RUN_STATE_FAILED, message)
        except Exception:
            incident = secrets.token_hex(6)
            log.exception("run %s failed unexpectedly (incident %s)", run_id, incident)
            await self._blocking.run(
                self._finish_quietly,
                run_id,
                RUN_STATE_FAILED,
                f"internal error (incident {incident})",
            )
        finally:
            self._canceled.discard(run_id)
            unregister(run_id)

    async def _recover_run(self, executor: Executor, run: Run) -> None:
        try:
            result = await executor.recover(run.id)
            if result is None:
                why = (
                    "the server stopped before this run's container started; run the action again"
                    if run.state == RUN_STATE_PENDING
                    else "the run's container vanished while the server was down"
                )
                await self._blocking.run(self._finish_quietly, run.id, RUN_STATE_FAILED, why)
                return
            # Its sensitive parameters are masked; its credentials are not known any more.
            redactor = await self._blocking.run(self._stored_redactor, run)
            if result.logs:
                logs = redactor.data(result.logs)
                await self._blocking.run(self._runs.replace_log, run.id, logs)
            bundle = await self._blocking.run(self._bundles.document, run.bundle_digest) or {}
            action = action_name(run)
            await self._complete(run.id, bundle, action, result, redactor)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not recover run %s", run.id)

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
        if result.canceled or run_id in self._canceled:
            state, message = RUN_STATE_CANCELED, "canceled"
        elif result.timed_out:
            state, message = (
                RUN_STATE_FAILED,
                f"timed out after {self._settings.run_timeout_seconds:g}s",
            )
        elif result.error:
            state, message = RUN_STATE_FAILED, result.error
        elif result.exit_code != 0:
            state, message = (
                RUN_STATE_FAILED,
                f"the invocation image exited with status {result.exit_code}",
            )
        elif missing:
            state, message = RUN_STATE_FAILED, "; ".join(missing)
        else:
            state, message = RUN_STATE_SUCCEEDED, ""
        message = redactor.text(message)
        await self._blocking.run(self._finish_quietly, run_id, state, message, values)

    def _mask_stored_log(self, run_id: str, redactor: Redactor) -> None:
        logs = self._runs.stored_log(run_id)
        masked = redactor.data(logs)
        if masked != logs:
            self._runs.replace_log(run_id, masked)

    def _finish_quietly(
        self, run_id: str, state: int, message: str, outputs: Sequence[OutputValue] = ()
    ) -> None:
        try:
            self._runs.finish(run_id, state, message, outputs)
        except FailedPrecondition:
            log.info("run %s had already ended", run_id)


__all__ = ["Prepared", "Runner", "inputs_redactor"]
