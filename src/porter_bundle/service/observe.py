"""Run lifecycle events: the one hook through which logs and metrics learn what runs do.

The action service and its runner emit a :class:`RunEvent` at each step of a run's life
(accepted, started, finished, canceled, timed out, recovered, failed on recovery, orphan
removed, cancel requested); :class:`Observers` hands each to every observer registered
(``porter_bundle.observability`` registers the lifecycle log and the run metrics). The
service layer knows nothing of logging formats or Prometheus.

Observers are called synchronously, on the event loop or on a worker thread of the pool, in
the context of the call that caused the event (so the caller's access is current for
``accepted``). Executor and registry failures reach error observers the same way, as a
bounded kind (:data:`ERROR_KINDS`). They must be quick and thread-safe; one that raises is logged and skipped.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Run,
)

log = logging.getLogger(__name__)


class Kind(enum.StrEnum):
    """What happened to a run."""

    ACCEPTED = "accepted"
    """Recorded PENDING by ExecuteAction."""
    STARTED = "started"
    """Got a slot: RUNNING, its container is being created."""
    FINISHED = "finished"
    """Ended SUCCEEDED or FAILED (not by a cancel or a timeout)."""
    CANCELED = "canceled"
    """Ended CANCELED."""
    TIMED_OUT = "timed_out"
    """Stopped after the run timeout and ended FAILED."""
    CANCEL_REQUESTED = "cancel_requested"
    """CancelRun was called for the active run."""
    RECOVERED = "recovered"
    """After a restart: re-attached to the container a previous process left behind."""
    RECOVERY_FAILED = "recovery_failed"
    """After a restart: ended FAILED (its container vanished, never started, or the engine
    is unreachable)."""
    ORPHAN_REMOVED = "orphan_removed"
    """After a restart: a container of no active run was removed."""


CAUSES = (
    "exit_code",
    "missing_outputs",
    "container_error",
    "timeout",
    "engine_unavailable",
    "internal",
    "recovery",
)
"""Why runs fail: the image exited non-zero, left outputs out, the engine refused the container
(image missing, ...), the run timed out, the engine could not be reached, a fault of ours,
or it could not be recovered after a restart."""

RESULTS: dict[int, str] = {
    RUN_STATE_SUCCEEDED: "succeeded",
    RUN_STATE_FAILED: "failed",
    RUN_STATE_CANCELED: "canceled",
    RUN_STATE_PENDING: "pending",
    RUN_STATE_RUNNING: "running",
}


@dataclass(frozen=True)
class RunEvent:
    """One lifecycle event. ``run`` is the run as committed (None for an orphan container)."""

    kind: Kind
    run_id: str
    run: Run | None = None
    message: str = ""
    """Why (a failure or recovery message, already masked)."""
    incident: str = ""
    """The incident ID of an internal error, as the run's message shows it."""
    cause: str = ""
    """Why a run failed, as one of :data:`CAUSES` ("" otherwise)."""

    @property
    def result(self) -> str:
        """The run's state in words: succeeded, failed, canceled, pending, running ("" without a run)."""
        return RESULTS.get(self.run.state, "") if self.run is not None else ""

    @property
    def duration_seconds(self) -> float | None:
        """From start (else creation) to completion, for an ended run; else None."""
        run = self.run
        if run is None or not run.HasField("complete_time"):
            return None
        begin = run.start_time if run.HasField("start_time") else run.create_time
        seconds = run.complete_time.ToNanoseconds() - begin.ToNanoseconds()
        return max(0.0, seconds / 1e9)


RunObserver = Callable[[RunEvent], None]

ErrorObserver = Callable[[str, str], None]
"""Told of an executor or registry failure at its boundary: ``(boundary, kind)``, boundary
``executor`` or ``registry``, kind one of :data:`ERROR_KINDS` (never a host, image or message)."""

ERROR_KINDS = ("unavailable", "timeout", "refused", "not_found", "denied", "bad_content", "other")
"""What an executor or registry failure was: unreachable, too slow, refused the request
(the engine refused the container; a registry 4xx), the thing is missing, the credentials
were refused, what came back was wrong, anything else."""


class Observers:
    """The observers of run events; add and remove them at any time, from any thread."""

    def __init__(self) -> None:
        self._observers: tuple[RunObserver, ...] = ()
        self._error_observers: tuple[ErrorObserver, ...] = ()
        self._lock = threading.Lock()

    def add(self, observer: RunObserver) -> None:
        """Calls ``observer`` for every event from now on."""
        with self._lock:
            self._observers = (*self._observers, observer)

    def remove(self, observer: RunObserver) -> None:
        """Stops calling ``observer``; nothing if it was not added."""
        with self._lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    def emit(self, event: RunEvent) -> None:
        """Hands ``event`` to every observer; one that raises does not stop the others."""
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.exception("run observer %r failed on %s", observer, event.kind)

    def add_errors(self, observer: ErrorObserver) -> None:
        """Calls ``observer`` for every executor or registry error from now on."""
        with self._lock:
            self._error_observers = (*self._error_observers, observer)

    def remove_errors(self, observer: ErrorObserver) -> None:
        """Stops calling ``observer`` for errors; nothing if it was not added."""
        with self._lock:
            self._error_observers = tuple(o for o in self._error_observers if o is not observer)

    def error(self, boundary: str, kind: str) -> None:
        """Tells every error observer of a failure at ``boundary`` (executor, registry)."""
        kind = kind if kind in ERROR_KINDS else "other"
        for observer in self._error_observers:
            try:
                observer(boundary, kind)
            except Exception:
                log.exception("error observer %r failed on %s %s", observer, boundary, kind)


__all__ = [
    "CAUSES",
    "ERROR_KINDS",
    "RESULTS",
    "ErrorObserver",
    "Kind",
    "Observers",
    "RunEvent",
    "RunObserver",
]
