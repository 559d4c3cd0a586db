"""Live run logs and states: they arrive as things happen and survive a server that goes away.

On UNAVAILABLE after the stream has delivered something, they call again (for ``reconnect``
seconds at most, with backoff): a log from the byte offset it had reached, a watch from the
current state (states already seen are not reported again). When the very first call cannot
reach the server they fail at once: a wrong address is not a server that restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import run_pb2
from porter.bundle.v1.porter_bundle_pb2_grpc import PorterBundleStub
from porter_bundle.client import connection
from porter_bundle.client.connection import Target

if TYPE_CHECKING:
    from porter.bundle.v1.porter_bundle_pb2_grpc import PorterBundleAsyncStub

DEFAULT_RECONNECT_SECONDS = 30.0

FINAL = frozenset(
    {run_pb2.RUN_STATE_SUCCEEDED, run_pb2.RUN_STATE_FAILED, run_pb2.RUN_STATE_CANCELED}
)

# Pings every 20 s while a stream is open, also when no data flows (the server sends
# heartbeats, and accepts pings down to every 10 s), so dead connections are noticed.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]

Notice = Callable[[str], None]


class GaveUp(Exception):
    """The server stayed unavailable for longer than ``reconnect`` seconds."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(error.details())
        self.error = error


async def follow_logs(
    target: Target,
    *,
    run_id: str,
    namespace: str = "",
    installation: str = "",
    offset: int = 0,
    follow: bool = False,
    write: Callable[[bytes], Any],
    notice: Notice,
    reconnect: float = DEFAULT_RECONNECT_SECONDS,
) -> run_pb2.Run | None:
    """Streams a run's log to ``write`` from ``offset``; the run in its final state when it
    ended while followed (else None). Raises ``grpc.aio.AioRpcError`` or :class:`GaveUp`."""
    final: run_pb2.Run | None = None
    request = pb.StreamRunLogsRequest(
        namespace=namespace, name=installation, run_id=run_id, follow=follow
    )

    async def one_call(stub: PorterBundleAsyncStub) -> AsyncIterator[None]:
        nonlocal offset, final
        request.offset = offset
        async for message in stub.StreamRunLogs(request):
            kind = message.WhichOneof("event")
            if kind == "chunk":
                chunk = message.chunk
                write(chunk.data[max(0, offset - chunk.offset) :])
                offset = max(offset, chunk.offset + len(chunk.data))
            elif kind == "run":
                # "latest" resolved: keep following this very run when calling again.
                request.run_id = message.run.id
                if message.run.state in FINAL:
                    final = message.run
            yield None

    await _with_reconnect(target, one_call, notice, reconnect)
    return final if follow else None


async def watch_runs(
    target: Target,
    *,
    namespace: str = "",
    installation: str = "",
    run_id: str = "",
    on_run: Callable[[run_pb2.Run], None],
    notice: Notice,
    reconnect: float = DEFAULT_RECONNECT_SECONDS,
) -> run_pb2.Run | None:
    """Calls ``on_run`` with each new state of the run (or of every run of the installation);
    the last run seen. Raises ``grpc.aio.AioRpcError`` or :class:`GaveUp`."""
    seen: dict[str, int] = {}
    last: run_pb2.Run | None = None
    request = pb.WatchInstallationRunsRequest(namespace=namespace, name=installation, run_id=run_id)

    async def one_call(stub: PorterBundleAsyncStub) -> AsyncIterator[None]:
        nonlocal last
        first = True
        async for message in stub.WatchInstallationRuns(request):
            if first and message.WhichOneof("event") == "heartbeat":
                notice(f"watching {f'{namespace}/{installation}'.lstrip('/')}: no run yet")
            first = False
            if message.WhichOneof("event") == "run":
                run = message.run
                if seen.get(run.id) != run.state:
                    seen[run.id] = run.state
                    on_run(run)
                last = run
            yield None

    await _with_reconnect(target, one_call, notice, reconnect)
    return last


async def _with_reconnect(
    target: Target,
    one_call: Callable[[PorterBundleAsyncStub], AsyncIterator[None]],
    notice: Notice,
    reconnect: float,
) -> None:
    """Runs ``one_call`` until it ends; calls again on UNAVAILABLE for up to ``reconnect``
    seconds since the last message, once a first message has arrived."""
    loop = asyncio.get_running_loop()
    delay = 0.2
    last_progress = loop.time()
    reached = False
    async with connection.aio_channel(target, CHANNEL_OPTIONS) as channel:
        stub: PorterBundleAsyncStub = PorterBundleStub(channel)
        while True:
            try:
                async for _ in one_call(stub):
                    last_progress = loop.time()
                    reached = True
                    delay = 0.2
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or not reached:
                    raise
                if loop.time() - last_progress + delay > reconnect:
                    raise GaveUp(exc) from None
                notice(f"{exc.details()}; calling again")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
