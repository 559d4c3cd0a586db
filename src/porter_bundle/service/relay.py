"""Run events across replicas: what one replica's hub publishes reaches the live streams of
every other replica sharing the PostgreSQL database, promptly (LISTEN/NOTIFY, see
:mod:`porter_bundle.store.notify`).

A notification carries IDs only: ``REPLICA r RUN INSTALLATION`` (the run changed state) or
``REPLICA l RUN OFFSET`` (its log grew at OFFSET). A replica drops its own; for another's, it
reads the run from the store (only when a stream here waits on it) and delivers it to its hub
as a RunChanged, and a log append as a gap (LogAppended without data), which makes a follower
read the log from the store where it is: each chunk is written once, by the run's owner, and
followers on any replica read those very bytes. Nothing depends on a notification arriving:
the streams' bounded re-check of the store (``stream_recheck_seconds``) catches up anyway.
"""

from __future__ import annotations

import logging

from porter_bundle.service.events import (
    Event,
    LogAppended,
    RunChanged,
    installation_key,
    run_key,
)
from porter_bundle.service.runs import RunService
from porter_bundle.store import Notifications

log = logging.getLogger(__name__)


class EventRelay:
    """Forwards this replica's run events to the others, and theirs to its hub."""

    def __init__(self, runs: RunService, notifications: Notifications, replica_id: str) -> None:
        self._runs = runs
        self._events = runs.events
        self._notifications = notifications
        self._me = replica_id.replace(" ", "_")

    def start(self) -> None:
        """Starts relaying (the hub's publications out, the other replicas' in)."""
        self._notifications.start(self._received)
        self._events.outbound = self._send

    def close(self) -> None:
        """Stops relaying."""
        self._events.outbound = None
        self._notifications.close()

    def _send(self, event: Event) -> None:
        if isinstance(event, RunChanged):
            payload = f"{self._me} r {event.run.id} {event.run.installation_id}"
        else:
            payload = f"{self._me} l {event.run_id} {event.offset}"
        self._notifications.publish(payload)

    def _received(self, payload: str) -> None:
        """One notification (on the listener's thread)."""
        parts = payload.split(" ")
        if len(parts) != 4 or parts[0] == self._me:
            return
        _, kind, run_id, rest = parts
        try:
            if kind == "r":
                if not self._events.listening(run_key(run_id), installation_key(rest)):
                    return
                run = self._runs.current(run_id)
                if run is not None:
                    self._events.deliver(RunChanged(run))
            elif kind == "l" and self._events.listening(run_key(run_id)):
                self._events.deliver(LogAppended(run_id, int(rest), None))
        except Exception:  # a stream's re-check catches up; the relay goes on
            log.warning("could not relay a notification about run %s", run_id, exc_info=True)


__all__ = ["EventRelay"]
