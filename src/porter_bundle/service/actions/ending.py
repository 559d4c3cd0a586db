"""How the runner ends a run: completes it from its container's result (outputs collected,
sensitive outputs masked in its stored log, the :func:`.verdict`), or fails it, storing the
end durably under the run's lease and telling the observers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from porter.bundle.v1.run_pb2 import RUN_STATE_CANCELED, RUN_STATE_FAILED, Run
from porter_bundle.errors import FailedPrecondition
from porter_bundle.executor import ContainerResult
from porter_bundle.service.actions.outages import Lost, durably
from porter_bundle.service.actions.outputs import collect_outputs
from porter_bundle.service.actions.verdict import verdict
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.inputs import render
from porter_bundle.service.observe import Kind, Observers, RunEvent
from porter_bundle.service.redact import Redactor
from porter_bundle.service.runs import Lease, LeaseLost, OutputValue, RunService

log = logging.getLogger(__name__)


class RunEnding:
    """Ends the runs of one runner (its store, pool, observers and lease)."""

    def __init__(
        self,
        *,
        runs: RunService,
        blocking: Blocking,
        observers: Observers,
        lease: Lease,
        canceled: Callable[[str], bool],
        run_timeout_seconds: float,
    ) -> None:
        """``canceled``: whether CancelRun reached a run through this process."""
        self._runs = runs
        self._blocking = blocking
        self._observers = observers
        self._lease = lease
        self._canceled = canceled
        self._run_timeout_seconds = run_timeout_seconds

    async def complete(
        self,
        run_id: str,
        bundle: dict[str, Any],
        action: str,
        result: ContainerResult,
        redactor: Redactor,
    ) -> None:
        """Ends a run whose container ended with ``result``: its outputs, then its verdict."""
        values, missing = collect_outputs(bundle, action, result.outputs)
        produced = [render(v.value) for v in values if v.sensitive]
        if produced:  # the image may have printed the sensitive outputs it wrote
            redactor = redactor.plus(produced)
            what = f"the masked log of run {run_id}"
            await durably(self._blocking, what, self._mask_stored_log, run_id, redactor)
        stored = await self._blocking.run(self._runs.current, run_id)
        # `canceling` stored: CancelRun reached this run through another process too.
        canceled = self._canceled(run_id) or (stored is not None and stored.canceling)
        state, message, kind, cause = verdict(result, missing, canceled, self._run_timeout_seconds)
        if cause == "container_error":
            self._observers.error("executor", "refused")
        await self.end(
            run_id,
            state,
            redactor.text(message),
            values,
            kind=kind,
            cause=cause,
            image_digest=result.image_digest,
        )

    async def lost(self, run_id: str, lost: Lost, redactor: Redactor) -> None:
        """Fails a run whose container could not be re-attached (see :func:`.reattach`)."""
        kind, cause = (
            (Kind.TIMED_OUT, "timeout") if lost.timed_out else (None, "engine_unavailable")
        )
        await self.end(
            run_id, RUN_STATE_FAILED, redactor.text(lost.message), kind=kind, cause=cause
        )

    async def end(
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

    def _mask_stored_log(self, run_id: str, redactor: Redactor) -> None:
        """Masks, in place and keeping every offset, values that became secret only when
        the run ended (its sensitive outputs). A live follower may have seen them already:
        nobody could know them as secrets before the image wrote them as outputs."""
        self._runs.mask_log(run_id, redactor.data, self._lease)

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
                run_id, state, message, outputs, image_digest=image_digest, lease=self._lease
            )
        except LeaseLost as exc:
            log.warning("run %s: %s; not ending it %s", run_id, exc.message, state)
            return None
        except FailedPrecondition:
            log.info("run %s had already ended", run_id)
            return None


__all__ = ["RunEnding"]
