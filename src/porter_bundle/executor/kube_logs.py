"""Following a container's log through the pod log API, across reconnects, with nothing repeated
or lost.

The API server ends a followed log stream when it likes (its own timeouts, a restart, the
network); the follower asks again from where it was. Lines are requested with ``timestamps``
(RFC 3339 with nanoseconds) and the reconnect with ``sinceTime``, which Kubernetes reads to the
second only: the second before the last line seen is asked for again, and what was already
delivered is skipped by its timestamp (and, for lines written within the same nanosecond, by
how many of them were delivered). A line cut off by a dropped stream is not delivered: it comes
whole with the next request.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import time
from collections.abc import Awaitable, Callable

from porter_bundle.executor.base import ExecutorUnavailable
from porter_bundle.executor.kube_client import KubeClient, KubeError
from porter_bundle.executor.logs import LogPump

log = logging.getLogger(__name__)

RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits before each successive reconnect that fails (the last one repeats)."""
MAX_FAILED_RECONNECTS = 20
_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


def parse_stamp(stamp: bytes) -> int | None:
    """Nanoseconds since the epoch of a log line's RFC 3339 timestamp (UTC, ``Z``)."""
    match = _STAMP.fullmatch(stamp)
    if not match:
        return None
    seconds = calendar.timegm(time.strptime(match[1].decode(), "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((match[2] or b"0").ljust(9, b"0"))


def since_time(ns: int) -> str:
    """``sinceTime`` for a reconnect after a line stamped ``ns``: its second, rounded down."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


class LogFollower:
    """Delivers one container's log, each line once, to a :class:`LogPump`."""

    def __init__(
        self, api: KubeClient, namespace: str, pod: str, container: str, pump: LogPump
    ) -> None:
        self._api = api
        self._path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        self._container = container
        self._pump = pump
        self._last = -1  # the timestamp of the last line delivered
        self._at_last = 0  # how many lines stamped exactly _last were delivered
        self.requests = 0

    async def follow(self, ended: Callable[[], Awaitable[bool]]) -> None:
        """Follows until the container has ended (``ended()``) and its log is read to the end."""
        failures = 0
        while True:
            try:
                await self._read(follow=True)
                failures = 0
            except (ExecutorUnavailable, KubeError) as exc:
                if isinstance(exc, KubeError) and exc.status == 404:
                    return  # the pod is gone (the Job was deleted): its log with it
                failures += 1
                if failures > MAX_FAILED_RECONNECTS:
                    raise
                log.info("log of %s: %s; reconnecting", self._path, exc)
            if await ended():
                try:  # what came after the stream closed
                    await self._read(follow=False, last=True)
                except KubeError as exc:
                    if exc.status != 404:
                        raise
                return
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])

    async def read_all(self) -> None:
        """The whole log of a container that has ended (no following)."""
        await self._read(follow=False, last=True)

    async def _read(self, *, follow: bool, last: bool = False) -> None:
        query = [("container", self._container), ("timestamps", "true")]
        if follow:
            query.append(("follow", "true"))
        if self._last >= 0:
            query.append(("sinceTime", since_time(self._last)))
        self.requests += 1
        seen_at_last = 0
        buffer = b""
        async with self._api.stream(self._path, query) as body:
            async for chunk in body.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    seen_at_last = await self._take(line + b"\n", seen_at_last)
        if last and buffer:  # the log's very end, without a newline
            await self._take(buffer, seen_at_last)

    async def _take(self, line: bytes, seen_at_last: int) -> int:
        stamp, _, text = line.partition(b" ")
        ns = parse_stamp(stamp)
        if ns is None:  # no timestamp: not the API's format; pass it on as it is
            await self._pump.feed(line)
            return seen_at_last
        if ns < self._last:
            return seen_at_last
        if ns == self._last:
            seen_at_last += 1
            if seen_at_last <= self._at_last:
                return seen_at_last
            self._at_last = seen_at_last
        else:
            self._last, self._at_last, seen_at_last = ns, 1, 1
        await self._pump.feed(text)
        return seen_at_last


__all__ = ["LogFollower", "parse_stamp", "since_time"]
