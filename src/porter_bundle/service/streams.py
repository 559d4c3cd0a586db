"""Live runs and logs: what a watching or following stream sends, and when it ends.

Every stream subscribes to the :class:`~porter_bundle.service.events.RunEvents` hub
first, then reads its starting point from the store, so nothing committed in between is
lost; events then bring each change (a state, appended log bytes) without a read. The
rules:

* **States.** A run's states are ranked PENDING < RUNNING < RUNNING and ``canceling``
  (CancelRun was called) < final; a stream sends a run only when its rank rises, so each state arrives once and in order, whether it came
  from an event, the first read or a re-check.
* **Logs.** The log is append-only and addressed by byte offset. A follower at offset
  ``pos`` sends an appended chunk straight from its event when the chunk starts at (or
  straddles) ``pos``; any gap — a missed event, an overflowed queue, a rewritten log —
  makes it read the store from ``pos`` instead. The final state is sent only after the
  log has been read to its end (the executor appends all output before it finishes a
  run), so "final state received" means "log complete".
* **Safety re-check.** Every ``recheck_seconds`` (jittered) a stream re-reads the run
  from the store, so a change made by another process, or an event missed, still
  arrives; a deleted run or installation ends the stream NOT_FOUND.
* **Heartbeats.** A stream that sent nothing for ``heartbeat_seconds`` sends a heartbeat.
* **Threads.** None is held: streams wait on the loop; store reads go through ``read``,
  which the caller runs inline (local SQLite) or briefly on its worker pool.
* **Shutdown.** When the hub closes, waiting streams raise Unavailable.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from porter.bundle.v1.run_pb2 import RUN_STATE_PENDING, RUN_STATE_RUNNING, Run
from porter_bundle.errors import NotFound, Violations
from porter_bundle.service.events import LogAppended, RunChanged, installation_key, run_key
from porter_bundle.service.installations import installation_not_found
from porter_bundle.service.runs import FINAL_STATES, RunService

T = TypeVar("T")

MAX_LOG_MESSAGE_BYTES = 64 * 1024
"""Largest ``data`` of one log message; longer stored chunks are split."""
READ_CHUNKS = 64
"""Stored log chunks fetched per store read while catching up."""
_REMEMBERED_RUNS = 64


@dataclass(frozen=True)
class StreamTiming:
    """How often idle streams send heartbeats and re-check the store (the defaults are the
    settings' ``stream_heartbeat_seconds`` and ``stream_recheck_seconds``)."""

    heartbeat_seconds: float
    recheck_seconds: float


@dataclass(frozen=True)
class Heartbeat:
    """Nothing to report for a while; the stream is alive."""

    time: datetime


@dataclass(frozen=True)
class LogData:
    """Log bytes starting at byte ``offset`` of the run's log."""

    offset: int
    data: bytes


Read = Callable[..., Awaitable[Any]]
"""``await read(fn, *args)``: runs a blocking store read (inline or on a worker pool)."""


def _rank(run: Run) -> int:
    if run.state == RUN_STATE_PENDING:
        return 1
    if run.state == RUN_STATE_RUNNING:
        return 3 if run.canceling else 2
    return 4 if run.state in FINAL_STATES else 0


def _run_gone(run_id: str) -> NotFound:
    return NotFound(
        f"run {run_id} no longer exists (its installation was deleted)",
        reason="RUN_NOT_FOUND",
        metadata={"run_id": run_id},
    )


class _Pace:
    """Heartbeat and re-check deadlines of one stream, and its sending side."""

    def __init__(self, timing: StreamTiming, emit: Callable[[Any], Awaitable[None]]) -> None:
        self._loop = asyncio.get_running_loop()
        self._timing = timing
        self._emit = emit
        now = self._loop.time()
        self._last_sent = now
        # Jittered, so a thousand streams opened together do not re-check together.
        self._next_recheck = now + timing.recheck_seconds * random.uniform(0.5, 1.0)

    async def send(self, item: Any) -> None:
        await self._emit(item)
        self._last_sent = self._loop.time()

    def timeout(self) -> float:
        """Seconds until the next heartbeat or re-check is due."""
        due = min(self._last_sent + self._timing.heartbeat_seconds, self._next_recheck)
        return max(0.0, due - self._loop.time())

    def recheck_due(self) -> bool:
        now = self._loop.time()
        if now < self._next_recheck:
            return False
        self._next_recheck = now + self._timing.recheck_seconds
        return True

    async def heartbeat_if_due(self) -> None:
        if self._loop.time() >= self._last_sent + self._timing.heartbeat_seconds:
            await self.send(Heartbeat(datetime.now(UTC)))


class StreamService:
    """Server streams of run states and run logs (see the module docstring for the rules)."""

    def __init__(self, runs: RunService) -> None:
        self._runs = runs
        self._events = runs.events

    async def watch_runs(
        self,
        namespace: str,
        name: str,
        run_id: str,
        *,
        read: Read,
        emit: Callable[[Run | Heartbeat], Awaitable[None]],
        timing: StreamTiming,
    ) -> None:
        """Sends run states as they change.

        With ``run_id``: that run (found by ID alone when ``name`` is empty), first in its
        current state, ending after its final state. Without: every run of the installation,
        first its most recent run in its current state (a heartbeat when it has none), never
        ending by itself.
        """
        if run_id:
            watched = await read(self._runs.locate, namespace, name, run_id)
            key = run_key(watched.id)
            installation_id = ""
        else:
            installation_id = await read(self._runs.installation_id, namespace, name)
            key = installation_key(installation_id)
        with self._events.subscribe(key) as sub:
            pace = _Pace(timing, emit)
            delivered: dict[str, int] = {}

            async def deliver(run: Run) -> bool:
                """Sends ``run`` if its state is news; True when the watch is over."""
                rank = _rank(run)
                if rank <= delivered.get(run.id, 0):
                    return False
                delivered.pop(run.id, None)
                delivered[run.id] = rank
                if len(delivered) > _REMEMBERED_RUNS:
                    delivered.pop(next(iter(delivered)))
                await pace.send(run)
                return bool(run_id) and run.state in FINAL_STATES

            async def snapshot() -> Run | None:
                if run_id:
                    current: Run | None = await read(self._runs.current, watched.id)
                    if current is None:
                        raise _run_gone(watched.id)
                    return current
                exists, latest = await read(self._runs.latest_run, installation_id)
                if not exists:
                    raise installation_not_found(namespace, name)
                return latest  # type: ignore[no-any-return]

            first = await snapshot()
            if first is None:
                await pace.send(Heartbeat(datetime.now(UTC)))
            elif await deliver(first):
                return
            while True:
                for event in await sub.wait(pace.timeout()):
                    if isinstance(event, RunChanged) and await deliver(event.run):
                        return
                if sub.take_overflow() or pace.recheck_due():
                    current = await snapshot()
                    if current is not None and await deliver(current):
                        return
                await pace.heartbeat_if_due()

    async def run_logs(
        self,
        namespace: str,
        name: str,
        run_id: str,
        offset: int,
        follow: bool,
        *,
        read: Read,
        emit: Callable[[Run | LogData | Heartbeat], Awaitable[None]],
        timing: StreamTiming,
    ) -> None:
        """Sends a run (its state now), then its log from byte ``offset``.

        Without ``follow``: what is stored, then the end. With ``follow``: then each new
        state and each appended chunk as they come, the final state last, once the log is
        complete. ``run_id`` may be "latest" when ``name`` is set; without ``name`` the run
        is found by its ID alone.
        """
        if offset < 0:
            v = Violations()
            v.add("offset", "must be 0 or more")
            v.raise_if_any()
        located: Run = await read(self._runs.locate, namespace, name, run_id)
        with self._events.subscribe(run_key(located.id)) as sub:
            pace = _Pace(timing, emit)
            run = await read(self._runs.current, located.id)
            if run is None:
                raise _run_gone(located.id)
            length = await read(self._runs.log_length, run.id)
            if offset > length:
                v = Violations()
                v.add("offset", f"is beyond the end of the log ({length} bytes)")
                v.raise_if_any(reason="OFFSET_OUT_OF_RANGE")
            await pace.send(run)
            rank = _rank(run)
            pos = await self._drain(run.id, offset, read, pace)
            if not follow or run.state in FINAL_STATES:
                return
            while True:
                stale = False
                final: Run | None = None
                # Chunks that queued up while this stream was busy go out as one message.
                batch = _Batch(pos)
                for event in await sub.wait(pace.timeout()):
                    if isinstance(event, LogAppended):
                        if event.data is None or event.offset > batch.end:
                            stale = True  # a gap: the store fills it, in order
                        elif not stale and event.offset + len(event.data) > batch.end:
                            batch.add(event.data[batch.end - event.offset :])
                    elif _rank(event.run) > rank:
                        rank = _rank(event.run)
                        if event.run.state in FINAL_STATES:
                            final = event.run
                        else:
                            pos = await batch.flush(pace)
                            batch = _Batch(pos)
                            await pace.send(event.run)
                pos = await batch.flush(pace)
                if sub.take_overflow() or pace.recheck_due():
                    stale = True
                    current = await read(self._runs.current, run.id)
                    if current is None:
                        raise _run_gone(run.id)
                    if _rank(current) > rank:
                        rank = _rank(current)
                        if current.state in FINAL_STATES:
                            final = current
                        else:
                            await pace.send(current)
                if stale or final is not None:
                    pos = await self._drain(run.id, pos, read, pace)
                if final is not None:
                    await pace.send(final)
                    return
                await pace.heartbeat_if_due()

    async def _drain(self, run_id: str, pos: int, read: Read, pace: _Pace) -> int:
        """Sends the stored log from ``pos`` to its current end; returns the new position."""
        while True:
            data: bytes = await read(self._runs.log_from, run_id, pos, READ_CHUNKS)
            if not data:
                return pos
            pos = await _send_log(pos, data, pace)


async def _send_log(pos: int, data: bytes, pace: _Pace) -> int:
    """Sends ``data`` (at ``pos``) in messages of at most MAX_LOG_MESSAGE_BYTES; the new end.

    A chunk that fits is sent as the very bytes object the event carried, so every follower
    of a run sends the same object (the API layer encodes it once for all)."""
    if len(data) <= MAX_LOG_MESSAGE_BYTES:
        await pace.send(LogData(pos, data))
        return pos + len(data)
    for start in range(0, len(data), MAX_LOG_MESSAGE_BYTES):
        piece = data[start : start + MAX_LOG_MESSAGE_BYTES]
        await pace.send(LogData(pos, piece))
        pos += len(piece)
    return pos


class _Batch:
    """Contiguous log bytes from ``start`` gathered from several events, sent as one."""

    def __init__(self, start: int) -> None:
        self.start = self.end = start
        self._parts: list[bytes] = []

    def add(self, data: bytes) -> None:
        self._parts.append(data)
        self.end += len(data)

    async def flush(self, pace: _Pace) -> int:
        if self._parts:
            data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            await _send_log(self.start, data, pace)
        return self.end


__all__ = [
    "Heartbeat",
    "LogData",
    "StreamService",
    "StreamTiming",
]
