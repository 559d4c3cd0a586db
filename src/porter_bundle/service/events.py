"""Run events: an in-process hub that tells live streams a run changed or its log grew.

:class:`~porter_bundle.service.runs.RunService` publishes after each committed change:
a run recorded, started or finished (:class:`RunChanged`, with the run as committed), a
chunk appended to a run's log (:class:`LogAppended`, with its offset and bytes). The
service layer is synchronous and runs on worker threads, so events are handed to the
event loop with ``call_soon_threadsafe``; streams subscribe on the loop and wait for them
without holding a thread or polling the database.

The hub is a doorbell with a fast path, not the record: a stream starts from the store,
and an event only saves it a read (the new state, the appended bytes). A stream that
misses events — its queue overflowed, or another process changed the run — catches up
from the store on its next safety re-check (see :mod:`porter_bundle.service.streams`).
With several replicas on PostgreSQL, :mod:`porter_bundle.service.relay` forwards each
publication to the other replicas (``outbound``) and delivers theirs here (:meth:`deliver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from types import TracebackType

from porter.bundle.v1.run_pb2 import Run
from porter_bundle.errors import Unavailable

log = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 1024
"""Events a subscription keeps for a stream that has not taken them yet; beyond, it starts
over from the store (a slow client costs bounded memory)."""


@dataclass(frozen=True)
class RunChanged:
    """A run was recorded or changed state; ``run`` is the message as committed."""

    run: Run


@dataclass(frozen=True)
class LogAppended:
    """``data`` was appended to a run's log at byte ``offset``; None: the log was rewritten."""

    run_id: str
    offset: int
    data: bytes | None


Event = RunChanged | LogAppended


def run_key(run_id: str) -> Hashable:
    """Subscription key of one run: its state changes and log."""
    return ("run", run_id)


def installation_key(installation_id: str) -> Hashable:
    """Subscription key of an installation: the state changes of all its runs."""
    return ("installation", installation_id)


class Subscription:
    """Events for some keys, queued until the stream takes them. Use it as a context manager:
    leaving it unsubscribes (also when the stream is canceled)."""

    def __init__(self, hub: RunEvents, keys: tuple[Hashable, ...]) -> None:
        self._hub = hub
        self.keys = keys
        self._events: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._overflowed = False

    def push(self, event: Event) -> None:
        """Queues an event (on the loop)."""
        if len(self._events) >= MAX_PENDING_EVENTS:
            self._events.clear()
            self._overflowed = True
        else:
            self._events.append(event)
        self._wake.set()

    def wake(self) -> None:
        """Wakes the waiting stream without an event (the hub is closing)."""
        self._wake.set()

    async def wait(self, within: float) -> list[Event]:
        """The events queued since the last call, waiting up to ``within`` seconds for one.

        Returns [] on timeout. Raises :class:`Unavailable` once the hub is closed (the
        server is shutting down): the client resumes on another server.
        """
        if not self._events and not self._overflowed and not self._hub.closed:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, within)):
                    await self._wake.wait()
        self._hub.check_open()
        events = list(self._events)
        self._events.clear()
        return events

    def take_overflow(self) -> bool:
        """True (once) when events were dropped: the stream must re-read the store."""
        overflowed, self._overflowed = self._overflowed, False
        return overflowed

    def close(self) -> None:
        """Unsubscribes; idempotent."""
        self._hub.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RunEvents:
    """The hub. Subscribing and dispatching happen on the event loop; publishing from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, set[Subscription]] = {}
        self._count = 0
        self.closed = False
        self.outbound: Callable[[Event], None] | None = None
        """Also told of every publication (any thread): the relay to other replicas."""

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions (what a test checks returns to 0 when streams end)."""
        return self._count

    def subscribe(self, *keys: Hashable) -> Subscription:
        """A subscription to ``keys``; call on the event loop. Unavailable once closed."""
        self.check_open()
        self._loop = asyncio.get_running_loop()
        sub = Subscription(self, keys)
        for key in keys:
            self._subscribers.setdefault(key, set()).add(sub)
        self._count += 1
        return sub

    def remove(self, sub: Subscription) -> None:
        """Unsubscribes ``sub`` (on the loop); nothing if it is gone already."""
        removed = False
        for key in sub.keys:
            subs = self._subscribers.get(key)
            if subs is not None and sub in subs:
                subs.discard(sub)
                removed = True
                if not subs:
                    del self._subscribers[key]
        if removed:
            self._count -= 1

    def check_open(self) -> None:
        """Raises :class:`Unavailable` once the hub is closed."""
        if self.closed:
            raise Unavailable(
                "the server is shutting down; call again to resume (on another server)",
                reason="SERVER_SHUTTING_DOWN",
            )

    def close(self) -> None:
        """Ends every stream (they raise Unavailable) and refuses new ones; call on the loop."""
        self.closed = True
        for subs in list(self._subscribers.values()):
            for sub in subs:
                sub.wake()

    # --- publishing (any thread) ---------------------------------------------------

    def run_changed(self, run: Run) -> None:
        """Publishes a committed run state."""
        self._publish(RunChanged(run))

    def log_appended(self, run_id: str, offset: int, data: bytes | None) -> None:
        """Publishes a committed log append (``data`` None: the whole log was rewritten)."""
        self._publish(LogAppended(run_id, offset, data))

    def deliver(self, event: Event) -> None:
        """Hands this process's streams an event another replica published (any thread)."""
        self._post(event, _keys(event))

    def listening(self, *keys: Hashable) -> bool:
        """Whether a stream here waits on one of ``keys`` now (any thread: a hint)."""
        return any(key in self._subscribers for key in keys)

    def _publish(self, event: Event) -> None:
        if self.outbound is not None:
            self.outbound(event)
        self._post(event, _keys(event))

    def _post(self, event: Event, keys: Iterable[Hashable]) -> None:
        loop = self._loop
        if loop is None or not self._subscribers:
            return  # nobody listens; a stream that subscribes later starts from the store
        try:
            loop.call_soon_threadsafe(self._dispatch, event, tuple(keys))
        except RuntimeError:  # the loop has closed
            log.debug("event dropped: the event loop is closed")

    def _dispatch(self, event: Event, keys: tuple[Hashable, ...]) -> None:
        for key in keys:
            for sub in self._subscribers.get(key, ()):
                sub.push(event)


def _keys(event: Event) -> tuple[Hashable, ...]:
    """The subscription keys an event concerns."""
    if isinstance(event, RunChanged):
        return (run_key(event.run.id), installation_key(event.run.installation_id))
    return (run_key(event.run_id),)


__all__ = [
    "Event",
    "LogAppended",
    "RunChanged",
    "RunEvents",
    "Subscription",
    "installation_key",
    "run_key",
]
