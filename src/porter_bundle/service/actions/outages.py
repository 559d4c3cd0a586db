"""Runs through outages of what they depend on: a database that cannot take a write (a full
disk, a locked or restarting database) and a container engine that stops answering mid-run.

- :func:`durably` retries a run's bookkeeping write with backoff until it is stored: a run's
  start, the rest of its log and its end are never dropped, and its container is kept (see
  the runner) until its end is recorded, so it is never RUNNING without one.
- :class:`LiveLog` stores a run's log as the container writes it; a write that fails stops
  the live copy, and the rest is stored from the container's whole log once it has ended
  (:func:`rest_of_log`), so nothing is lost or repeated.
- :func:`reattach` waits for an engine that stopped answering (the run RUNNING, its message
  saying so), with backoff, and finishes the run's container once the engine answers again,
  as recovery after a restart does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from porter.bundle.v1.run_pb2 import Run
from porter_bundle.errors import DatabaseUnavailable
from porter_bundle.executor import (
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
    LogSink,
)
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.redact import Redactor
from porter_bundle.service.runs import Lease, RunService

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_SECONDS = 0.2
"""The first wait before trying again; each next one doubles, up to the cap."""
MAX_RETRY_SECONDS = 5.0
"""The longest wait between two tries (of a write, or of reaching the engine)."""
STOP_MARGIN_SECONDS = 30.0
"""Beyond a run's timeout, the time its container has to be stopped and collected."""


def backoff() -> Iterator[float]:
    """The waits between tries: doubling from FIRST_RETRY_SECONDS, capped."""
    wait = FIRST_RETRY_SECONDS
    while True:
        yield wait
        wait = min(wait * 2, MAX_RETRY_SECONDS)


async def durably(blocking: Blocking, what: str, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on the pool, tried again with backoff while the database cannot take it
    (DatabaseUnavailable: a full disk, a lock, a restart) until it is stored."""
    waits = backoff()
    while True:
        try:
            return await blocking.run(fn, *args)
        except DatabaseUnavailable as exc:
            wait = next(waits)
            log.warning("could not store %s (%s); trying again in %gs", what, exc.message, wait)
            await asyncio.sleep(wait)


class LiveLog:
    """Masks and stores a run's log as it comes; after a write that fails it stores nothing
    more (the rest comes from the container's whole log, :func:`rest_of_log`)."""

    def __init__(
        self,
        runs: RunService,
        blocking: Blocking,
        run_id: str,
        redactor: Redactor,
        lease: Lease | None = None,
    ):
        """``lease``: writes only while this replica holds the run (else LeaseLost)."""
        self._runs, self._blocking, self._run_id, self._lease = runs, blocking, run_id, lease
        self._masked = redactor.stream()
        self.broken = False

    async def feed(self, chunk: bytes) -> None:
        """A chunk of the container's log (the executor's ``on_log``)."""
        await self._store(self._masked.feed(chunk))

    async def flush(self) -> None:
        """What masking held back, once the container's log has ended."""
        await self._store(self._masked.flush())

    async def _store(self, safe: bytes) -> None:
        if not safe or self.broken:
            return
        try:
            await self._blocking.run(self._runs.append_log, self._run_id, safe, self._lease)
        except DatabaseUnavailable as exc:
            self.broken = True
            log.warning(
                "run %s: its log could not be stored (%s); the rest is stored once it ends",
                self._run_id,
                exc.message,
            )


async def rest_of_log(
    runs: RunService,
    blocking: Blocking,
    run_id: str,
    result: ContainerResult,
    redactor: Redactor,
    lease: Lease | None = None,
) -> None:
    """Stores what the stored log lacks of the container's whole log (masks keep lengths, so
    the stored length is the offset to go on from); retried until stored. A log longer than
    the executor keeps ends with its visible ``[log truncated: ...]`` note."""
    if not result.logs:
        return
    stored = await durably(blocking, f"the log of run {run_id}", runs.log_length, run_id)
    rest = redactor.data(result.logs)[stored:]
    if rest:
        what = f"the log of run {run_id}"
        await durably(blocking, what, runs.append_log, run_id, rest, lease)


@dataclass
class Lost:
    """Why a run could not be re-attached to its container: the message it FAILS with."""

    message: str
    timed_out: bool = False


@dataclass
class Reattach:
    """What :func:`reattach` needs of the runner."""

    runs: RunService
    blocking: Blocking
    run_timeout_seconds: float
    retry_seconds: float
    cancel_grace_seconds: float
    canceled: Callable[[str], bool]


async def reattach(
    ctx: Reattach,
    executor: Executor,
    run: Run,
    lost: ExecutorUnavailable,
    spec: ContainerSpec | None = None,
    on_log: LogSink | None = None,
) -> ContainerResult | Lost:
    """Waits for the engine that stopped answering during ``run``, then finishes its
    container (recover, ``keep``: the caller removes it once the result is recorded).

    A run whose container had not started yet (``spec`` given) is executed anew when the
    engine has none of it. :class:`Lost` when its container is gone, the run's timeout
    passed or the engine stayed unreachable for ``retry_seconds``.
    """
    loop = asyncio.get_running_loop()
    started = run.start_time.ToSeconds() if run.HasField("start_time") else time.time()
    run_left = ctx.run_timeout_seconds + STOP_MARGIN_SECONDS - (time.time() - started)
    deadline = loop.time() + min(run_left, ctx.retry_seconds)
    timed_out = run_left <= ctx.retry_seconds
    await _note(ctx, run.id, f"the container engine is unreachable ({lost}); retrying")
    waits = backoff()
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(next(waits), left))
        try:
            await executor.ping()
            if ctx.canceled(run.id):
                await executor.cancel(run.id, ctx.cancel_grace_seconds)
            result = await executor.recover(run.id, keep=True)
            if (
                spec is not None
                and not lost.started
                and (result is None or result.exit_code is None)
            ):
                await _note(ctx, run.id, "")
                log.info("run %s: the engine answers again; starting its container", run.id)
                return await executor.execute(spec, on_log, keep=True)
        except ExecutorUnavailable as again:
            lost.args = again.args  # the latest reason
            lost.started = lost.started or again.started
            continue
        if result is None:
            return Lost(
                "the run's container is gone: the container engine lost it while it was unreachable"
            )
        await _note(ctx, run.id, "")
        log.info("run %s: the engine answers again; re-attached to its container", run.id)
        return result
    if timed_out:
        return Lost(
            f"timed out after {ctx.run_timeout_seconds:g}s while the container engine was "
            f"unreachable ({lost})",
            timed_out=True,
        )
    return Lost(f"the container engine stayed unreachable for {ctx.retry_seconds:g}s ({lost})")


async def release(executor: Executor, run_id: str, retry_seconds: float) -> None:
    """Removes the run's container once its end is stored, trying again with backoff while
    the engine does not answer (for ``retry_seconds``; after that, the next start's orphan
    sweep removes it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_seconds
    waits = backoff()
    while True:
        try:
            if await executor.remove(run_id):
                return
            reason = "the engine did not remove it"
        except ExecutorUnavailable as exc:
            reason = str(exc)
        if loop.time() >= deadline:
            log.warning("could not remove the container of run %s: %s", run_id, reason)
            return
        await asyncio.sleep(next(waits))


async def _note(ctx: Reattach, run_id: str, message: str) -> None:
    """Sets the RUNNING run's message, as far as the database takes it now."""
    try:
        await ctx.blocking.run(ctx.runs.note, run_id, message)
    except DatabaseUnavailable:
        log.warning("run %s: could not store its message %r", run_id, message)


__all__ = [
    "LiveLog",
    "Lost",
    "Reattach",
    "backoff",
    "durably",
    "reattach",
    "release",
    "rest_of_log",
]
