"""A container's log: followed in a thread (:class:`LogStream`), pumped in order on the event
loop to the run's consumer and kept up to a limit (:class:`LogPump`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
from docker.types.daemon import CancellableStream

from porter_bundle.executor.base import LogSink
from porter_bundle.executor.engine import describe

log = logging.getLogger(__name__)

DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024
"""Kept in ``ContainerResult.logs``; ``on_log`` still sees everything."""


class LogStream:
    """A container's log, followed in a thread; :meth:`close` cuts it from any thread."""

    def __init__(self, api: docker.APIClient, container_id: str, *, attach: bool = False) -> None:
        self._api = api
        self._container_id = container_id
        self._attach = attach
        self._lock = threading.Lock()
        self._stream: CancellableStream[bytes] | None = None
        self._opened: CancellableStream[bytes] | None = None
        self._closed = False

    def connect(self) -> bool:
        """Attaches to the (not yet started) container now; False if the engine refuses."""
        try:
            self._opened = self._api.attach(
                self._container_id, stdout=True, stderr=True, stream=True, logs=True
            )
        except Exception as exc:
            log.info(
                "attaching to %s failed, following its log instead: %s",
                self._container_id[:12],
                describe(exc),
            )
            return False
        return True

    def discard(self) -> None:
        """Releases an attached stream that will never be followed (the start failed)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            _release(opened)

    def follow(self, deliver: Callable[[bytes | None], None]) -> None:
        """Delivers each chunk as it comes, then None; runs until the log ends or is closed."""
        stream: CancellableStream[bytes] | None = None
        try:
            stream = self._opened or self._api.logs(self._container_id, stream=True, follow=True)
            with self._lock:
                if self._closed:
                    return
                self._stream = stream
            for chunk in stream:
                deliver(chunk)
        except Exception as exc:
            if not self._closed:
                log.warning("log stream of %s failed: %s", self._container_id[:12], describe(exc))
        finally:
            if stream is not None:
                with self._lock:
                    self._stream = None
                    _release(stream)
            deliver(None)

    def close(self) -> None:
        """Cuts the stream: the thread in :meth:`follow` wakes up and returns."""
        with self._lock:
            self._closed = True
            if self._stream is not None:
                with contextlib.suppress(Exception):
                    self._stream.close()


def _release(stream: CancellableStream[bytes]) -> None:
    """Closes a log stream for good.

    The SDK's ``close()`` shuts the socket down but leaves the HTTP response open; the
    socket's file descriptor then lives on until garbage collection, which warns about it.
    """
    with contextlib.suppress(Exception):
        stream.close()
    response = getattr(stream, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


@dataclass
class LogPump:
    """Takes log chunks off the queue in order: keeps them (up to a limit), passes them on."""

    queue: asyncio.Queue[bytes | None]
    sink: LogSink | None
    limit: int
    total: int = 0
    _kept: list[bytes] = field(default_factory=list)
    _kept_size: int = 0

    async def run(self) -> None:
        """Feeds every chunk of the queue until its end (None)."""
        while (chunk := await self.queue.get()) is not None:
            await self.feed(chunk)

    async def feed(self, chunk: bytes) -> None:
        """Keeps what fits of ``chunk`` and passes all of it to the sink."""
        if not chunk:
            return
        self.total += len(chunk)
        room = self.limit - self._kept_size
        if room > 0:
            self._kept.append(chunk[:room])
            self._kept_size += min(room, len(chunk))
        if self.sink is not None:
            try:
                await self.sink(chunk)
            except Exception:
                # A failing consumer must not fail the run; it gets nothing more, though.
                log.exception("the log consumer failed; it gets no more of this run's log")
                self.sink = None

    def logs(self) -> bytes:
        """What was kept, with a note of how much was not."""
        kept = b"".join(self._kept)
        if self.total > self._kept_size:
            kept += f"\n[log truncated: {self.total - self._kept_size} more bytes]\n".encode()
        return kept
