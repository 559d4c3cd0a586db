"""WatchInstallationRuns and StreamRunLogs through the real server, with a scripted executor.

Everything above the executor is real (server, services, SQLite, grpc.aio clients); the
executor writes the log when the test says so, so the timing of every chunk and state is
under control. tests/e2e/test_streams_engine.py follows real containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
)
from porter_bundle.api.server import start_server
from porter_bundle.config import Settings
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from porter_bundle.service.events import MAX_PENDING_EVENTS, RunEvents, run_key
from porter_bundle.service.runs import RunService
from porter_bundle.service.streams import MAX_LOG_MESSAGE_BYTES
from tests.conftest import ServerHandle
from tests.fake_executor import ScriptedExecutor
from tests.helpers import wait_until_async

NS, NAME = "dev", "app"
BLOCKER = "blocker"
"""Another installation, whose run can hold the only run slot (max_concurrent_runs=1)."""
HEARTBEAT = 0.3
RECHECK = 0.3

BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "app",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/app-installer:v1"}],
    "actions": {"tick": {"stateless": True, "modifies": False}},
}


class Stream:
    """Reads a server stream in a task and keeps every message."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.messages: list[Any] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = False
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.call:
                self.messages.append(message)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended = True

    def of(self, kind: str) -> list[Any]:
        return [getattr(m, kind) for m in self.messages if m.WhichOneof("event") == kind]

    def runs(self) -> list[tuple[str, int]]:
        return [(r.id, r.state) for r in self.of("run")]

    def log(self, start: int = 0) -> bytes:
        """The log received, checking each chunk starts where the previous one ended."""
        data, pos = b"", start
        for chunk in self.of("chunk"):
            assert chunk.offset == pos, f"chunk at {chunk.offset}, expected {pos}"
            data += chunk.data
            pos += len(chunk.data)
        return data

    async def until(self, condition: Callable[[Stream], Any], what: str) -> None:
        def check() -> Any:
            if condition(self):
                return True
            if self.ended:
                raise AssertionError(f"stream ended ({self.error}) before {what}")
            return False

        await wait_until_async(check, what)

    async def finished(self) -> None:
        await wait_until_async(lambda: self.ended, "the end of the stream")


def reason_of(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


@pytest.fixture
def scripted() -> ScriptedExecutor:
    return ScriptedExecutor()


@pytest.fixture
def services(store, scripted) -> Services:
    return Services.create(
        store,
        executor=lambda: scripted,
        action_settings=ActionSettings(
            run_timeout_seconds=60,
            max_concurrent_runs=1,
            cancel_grace_seconds=10,
            network=None,
            engine_retry_seconds=60,
        ),
    )


@pytest.fixture
def server_settings() -> Settings:
    return Settings(
        address="127.0.0.1:0", stream_heartbeat_seconds=HEARTBEAT, stream_recheck_seconds=RECHECK
    )


@pytest.fixture
def app(stub) -> None:
    stub.CreateBundle(
        pb.CreateBundleRequest(reference="localhost:5000/app:v1", bundle_json=json.dumps(BUNDLE))
    )
    for name in (NAME, BLOCKER):
        stub.CreateInstallation(
            pb.CreateInstallationRequest(
                installation=Installation(
                    namespace=NS,
                    name=name,
                    bundle=BundleReference(repository="localhost:5000/app", tag="v1"),
                )
            )
        )


@pytest.fixture
async def aio(server, scripted):
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield porter_bundle_pb2_grpc.PorterBundleStub(channel)
    # A test that failed half-way leaves its run going: end it before the server's loop stops.
    for run_id in list(scripted.queues):
        scripted.exit(run_id, 0)
    asyncio.run_coroutine_threadsafe(server.services.actions.wait_idle(), server.loop).result(10)


async def start_run(aio, scripted: ScriptedExecutor, name: str = NAME) -> str:
    run = (
        await aio.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=name, action="tick"))
    ).run
    await wait_until_async(lambda: run.id in scripted.queues, "the run's container to start")
    return str(run.id)


def follow(aio, run_id: str, offset: int = 0, *, name: str = NAME, follow: bool = True) -> Stream:
    return Stream(
        aio.StreamRunLogs(
            pb.StreamRunLogsRequest(
                namespace=NS if name else "", name=name, run_id=run_id, offset=offset, follow=follow
            )
        )
    )


def watch(aio, run_id: str = "", *, name: str = NAME) -> Stream:
    return Stream(
        aio.WatchInstallationRuns(
            pb.WatchInstallationRunsRequest(namespace=NS if name else "", name=name, run_id=run_id)
        )
    )


def on_loop(server, fn: Callable[[], Any]) -> Any:
    async def call() -> Any:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), server.loop).result(10)


def subscribers(server) -> int:
    return int(on_loop(server, lambda: server.services.events.subscriber_count))


LINES = [f"line {i}: {'x' * i}\n".encode() for i in range(1, 9)]
FULL = b"".join(LINES)


# --- logs ----------------------------------------------------------------------------


async def test_followers_before_during_and_after_each_get_the_whole_log(
    aio, app, scripted, stub, server
):
    blocker = await start_run(aio, scripted, BLOCKER)  # holds the only run slot
    run_id = (
        await aio.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=NAME, action="tick"))
    ).run.id
    before = follow(aio, run_id)
    await before.until(lambda s: s.runs(), "the first message")
    assert before.runs() == [(run_id, RUN_STATE_PENDING)]  # followed before it started
    scripted.exit(blocker, 0)
    await wait_until_async(lambda: run_id in scripted.queues, "the run's container to start")
    for line in LINES[:3]:
        scripted.write(run_id, line)
    await before.until(lambda s: s.log() == b"".join(LINES[:3]), "the first lines")
    during = follow(aio, run_id)
    await during.until(lambda s: s.log() == b"".join(LINES[:3]), "the stored part")
    for line in LINES[3:]:
        scripted.write(run_id, line)
    scripted.exit(run_id, 0)
    await before.finished()
    await during.finished()
    after = follow(aio, run_id)
    stored_only = follow(aio, run_id, follow=False)
    await after.finished()
    await stored_only.finished()

    for stream in (before, during, after, stored_only):
        assert stream.error is None, stream.error
        assert stream.log() == FULL
    stored = stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name=NAME, run_id=run_id)
    ).logs.encode()
    assert stored == FULL
    # Following: the run first, each new state, the final state last, once the log is complete.
    assert before.runs() == [
        (run_id, RUN_STATE_PENDING),
        (run_id, RUN_STATE_RUNNING),
        (run_id, RUN_STATE_SUCCEEDED),
    ]
    assert during.runs() == [(run_id, RUN_STATE_RUNNING), (run_id, RUN_STATE_SUCCEEDED)]
    for stream in (before, during):
        assert stream.messages[0].WhichOneof("event") == "run"
        final = stream.messages[-1].run
        assert final.state == RUN_STATE_SUCCEEDED
        assert final.HasField("start_time") and final.HasField("complete_time")
    # A finished run streams the same from the store.
    assert after.runs() == [(run_id, RUN_STATE_SUCCEEDED)] == stored_only.runs()
    await wait_until_async(lambda: subscribers(server) == 0, "no subscribers")


async def test_resume_from_the_last_offset_gets_the_rest_without_gap_or_repeat(
    aio, app, scripted, server
):
    run_id = await start_run(aio, scripted)
    first = follow(aio, run_id)
    for line in LINES[:4]:
        scripted.write(run_id, line)
    await first.until(lambda s: len(s.log()) == len(b"".join(LINES[:4])), "four lines")
    first.call.cancel()
    await first.finished()
    resume_at = len(first.log())
    for line in LINES[4:6]:  # written while nobody follows
        scripted.write(run_id, line)
    second = follow(aio, run_id, offset=resume_at)
    await second.until(lambda s: s.of("chunk"), "the missed lines")
    assert second.of("chunk")[0].offset == resume_at
    for line in LINES[6:]:
        scripted.write(run_id, line)
    scripted.exit(run_id, 0)
    await second.finished()
    assert second.error is None
    assert first.log() + second.log(resume_at) == FULL
    # Any offset works, also inside a stored chunk.
    mid = follow(aio, run_id, offset=5)
    await mid.finished()
    assert mid.log(5) == FULL[5:]
    end = follow(aio, run_id, offset=len(FULL))
    await end.finished()
    assert end.log(len(FULL)) == b"" and end.runs() == [(run_id, RUN_STATE_SUCCEEDED)]


async def test_large_output_is_split_into_bounded_chunks(aio, app, scripted):
    run_id = await start_run(aio, scripted)
    blob = bytes(range(256)) * (MAX_LOG_MESSAGE_BYTES // 100)  # ~2.5 messages
    live = follow(aio, run_id)
    await live.until(lambda s: s.runs(), "the run")
    scripted.write(run_id, blob)
    scripted.exit(run_id, 0)
    await live.finished()
    stored = follow(aio, run_id, follow=False)
    await stored.finished()
    for stream in (live, stored):
        assert stream.log() == blob
        assert max(len(c.data) for c in stream.of("chunk")) <= MAX_LOG_MESSAGE_BYTES


async def test_a_run_canceled_while_followed_ends_the_stream_after_the_final_state(
    aio, app, scripted, server
):
    run_id = await start_run(aio, scripted)
    logs = follow(aio, run_id)
    states = watch(aio, run_id)
    scripted.write(run_id, b"working\n")
    await logs.until(lambda s: s.log() == b"working\n", "the first line")
    canceled = await aio.CancelRun(pb.CancelRunRequest(namespace=NS, name=NAME, run_id=run_id))
    assert canceled.run.state == RUN_STATE_RUNNING and canceled.run.canceling
    await logs.finished()
    await states.finished()
    assert logs.error is None and states.error is None
    assert logs.messages[-1].run.state == RUN_STATE_CANCELED and logs.log() == b"working\n"
    # Each step once: running, canceling (still RUNNING), canceled.
    assert states.runs() == [
        (run_id, RUN_STATE_RUNNING),
        (run_id, RUN_STATE_RUNNING),
        (run_id, RUN_STATE_CANCELED),
    ]
    assert [m.run.canceling for m in states.messages if m.WhichOneof("event") == "run"] == [
        False,
        True,
        True,
    ]
    await wait_until_async(lambda: subscribers(server) == 0, "no subscribers")


async def test_no_follow_on_an_active_run_sends_what_is_stored_and_ends(aio, app, scripted):
    run_id = await start_run(aio, scripted)
    scripted.write(run_id, b"so far\n")
    live = follow(aio, run_id)
    await live.until(lambda s: s.log() == b"so far\n", "the line")
    stored = follow(aio, run_id, follow=False)
    await stored.finished()
    assert stored.error is None and stored.log() == b"so far\n"
    assert stored.runs() == [(run_id, RUN_STATE_RUNNING)]
    scripted.exit(run_id, 0)
    await live.finished()


async def test_latest_and_lookup_by_id_alone(aio, app, scripted):
    run_id = await start_run(aio, scripted)
    scripted.write(run_id, b"hello\n")
    scripted.exit(run_id, 0)
    states = watch(aio, run_id, name="")  # by ID alone
    await states.finished()
    assert states.runs()[-1] == (run_id, RUN_STATE_SUCCEEDED)
    for stream in (
        follow(aio, run_id, name=""),
        follow(aio, "latest"),
        follow(aio, run_id.lower()),
    ):
        await stream.finished()
        assert stream.error is None and stream.log() == b"hello\n"
        assert stream.runs() == [(run_id, RUN_STATE_SUCCEEDED)]


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (
            pb.StreamRunLogsRequest(namespace=NS, name=NAME, run_id="01JDZZZZZZZZZZZZZZZZZZZZZZ"),
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
        (
            pb.StreamRunLogsRequest(run_id="01JDZZZZZZZZZZZZZZZZZZZZZZ"),
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
        (pb.StreamRunLogsRequest(run_id="latest"), grpc.StatusCode.INVALID_ARGUMENT, "run_id"),
        (
            pb.StreamRunLogsRequest(namespace=NS, run_id="01JDZZZZZZZZZZZZZZZZZZZZZZ"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name",
        ),
        (
            pb.StreamRunLogsRequest(namespace=NS, name=NAME, run_id="latest"),
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
        (
            pb.StreamRunLogsRequest(namespace=NS, name=NAME, run_id="x", offset=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "offset",
        ),
        (pb.WatchInstallationRunsRequest(namespace=NS, name="nope"), grpc.StatusCode.NOT_FOUND, ""),
        (pb.WatchInstallationRunsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (
            pb.WatchInstallationRunsRequest(run_id="not-an-id"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "run_id",
        ),
    ],
)
async def test_bad_requests_fail_with_typed_errors(aio, app, request_, code, field):
    if isinstance(request_, pb.StreamRunLogsRequest):
        stream = Stream(aio.StreamRunLogs(request_))
    else:
        stream = Stream(aio.WatchInstallationRuns(request_))
    await stream.finished()
    assert stream.error is not None and stream.error.code() == code, stream.error
    assert stream.messages == []
    if field:
        status = status_pb2.Status.FromString(
            dict(stream.error.trailing_metadata())["grpc-status-details-bin"]
        )
        fields = set()
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields |= {v.field for v in bad.field_violations}
        assert field in fields


async def test_offset_beyond_the_log_is_out_of_range(aio, app, scripted):
    run_id = await start_run(aio, scripted)
    scripted.write(run_id, b"12345")
    scripted.exit(run_id, 0)
    await (done := follow(aio, run_id)).finished()
    beyond = follow(aio, run_id, offset=6)
    await beyond.finished()
    assert beyond.error is not None and beyond.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(beyond.error) == "OFFSET_OUT_OF_RANGE" and done.log() == b"12345"


# --- watching states -------------------------------------------------------------------


async def test_a_watcher_sees_every_state_transition_once(aio, app, scripted, server):
    watcher = watch(aio)
    await watcher.until(lambda s: s.of("heartbeat"), "the opening heartbeat (no run yet)")
    assert watcher.messages[0].WhichOneof("event") == "heartbeat"

    first = await start_run(aio, scripted)
    scripted.exit(first, 0)
    await watcher.until(lambda s: (first, RUN_STATE_SUCCEEDED) in s.runs(), "the first run's end")
    second = await start_run(aio, scripted)
    scripted.exit(second, 3)
    await watcher.until(lambda s: (second, RUN_STATE_FAILED) in s.runs(), "the second run's end")
    assert watcher.runs() == [
        (first, RUN_STATE_PENDING),
        (first, RUN_STATE_RUNNING),
        (first, RUN_STATE_SUCCEEDED),
        (second, RUN_STATE_PENDING),
        (second, RUN_STATE_RUNNING),
        (second, RUN_STATE_FAILED),
    ]
    runs = watcher.of("run")
    assert runs[1].HasField("start_time") and not runs[1].HasField("complete_time")
    assert runs[5].message == "the invocation image exited with status 3"
    assert not watcher.ended  # the installation watch goes on

    # A watcher that arrives later starts with the most recent run as it is now.
    late = watch(aio)
    await late.until(lambda s: s.runs(), "the current state")
    assert late.runs() == [(second, RUN_STATE_FAILED)]
    # Watching one run ends after its final state.
    single = watch(aio, first)
    await single.finished()
    assert single.error is None and single.runs() == [(first, RUN_STATE_SUCCEEDED)]
    for stream in (watcher, late):
        stream.call.cancel()
    await wait_until_async(lambda: subscribers(server) == 0, "no subscribers")


async def test_heartbeats_keep_idle_streams_alive(aio, app, scripted):
    run_id = await start_run(aio, scripted)
    logs = follow(aio, run_id)
    states = watch(aio)
    for stream in (logs, states):
        await stream.until(lambda s: len(s.of("heartbeat")) >= 3, "three heartbeats")
    beats = [h.time.ToDatetime() for h in logs.of("heartbeat")]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(beats)]
    assert all(g >= HEARTBEAT * 0.8 for g in gaps), gaps
    scripted.exit(run_id, 0)
    await logs.finished()
    assert logs.error is None


async def test_changes_made_elsewhere_arrive_through_the_recheck(aio, app, scripted, store, server):
    """Another process (or a missed event): no event reaches this server's hub."""
    run_id = await start_run(aio, scripted)
    logs = follow(aio, run_id)
    states = watch(aio, run_id)
    await logs.until(lambda s: s.runs(), "the run")
    other = RunService(store)  # its own hub: nothing reaches the server's subscribers
    other.append_log(run_id, b"from elsewhere\n")
    await logs.until(lambda s: s.log() == b"from elsewhere\n", "the line, after a re-check")
    other.finish(run_id, RUN_STATE_FAILED, "finished elsewhere")
    await logs.finished()
    await states.finished()
    assert logs.messages[-1].run.message == "finished elsewhere"
    assert states.runs() == [(run_id, RUN_STATE_RUNNING), (run_id, RUN_STATE_FAILED)]
    scripted.exit(run_id, 0)  # the container ends; the run had already ended


async def test_deleting_the_installation_ends_its_streams_not_found(
    aio, app, scripted, stub, server
):
    run_id = await start_run(aio, scripted)
    scripted.exit(run_id, 0)
    states = watch(aio)
    await states.until(lambda s: (run_id, RUN_STATE_SUCCEEDED) in s.runs(), "the last run")
    stub.DeleteInstallation(pb.DeleteInstallationRequest(namespace=NS, name=NAME, force=True))
    await states.finished()
    assert states.error is not None and states.error.code() == grpc.StatusCode.NOT_FOUND


# --- lifecycle: cancel, shutdown, threads ----------------------------------------------


async def test_client_cancel_leaves_no_subscription_task_or_thread(aio, app, scripted, server):
    run_id = await start_run(aio, scripted)

    async def tasks() -> int:
        return len(asyncio.all_tasks()) - 1  # without this one

    def server_tasks() -> int:
        return int(asyncio.run_coroutine_threadsafe(tasks(), server.loop).result(10))

    async def open_streams() -> list[Stream]:
        streams = [follow(aio, run_id) for _ in range(20)] + [watch(aio) for _ in range(20)]
        for stream in streams:
            await stream.until(lambda s: s.messages, "the first message")
        return streams

    async def cancel(streams: list[Stream]) -> None:
        for stream in streams:
            stream.call.cancel()
        await wait_until_async(lambda: subscribers(server) == 0, "every subscription to end")

    # A first round lets the worker pools (store reads off SQLite go there) reach their size.
    await cancel(await open_streams())
    base_tasks, base_threads = server_tasks(), threading.active_count()
    streams = await open_streams()
    assert subscribers(server) == 40
    assert server_tasks() <= base_tasks + 2 * 40  # grpc.aio's own, per call; none of ours
    assert threading.active_count() == base_threads  # no stream holds a thread
    scripted.write(run_id, b"fan out\n")
    for stream in streams[:20]:
        await stream.until(lambda s: s.log() == b"fan out\n", "the line")
    await cancel(streams)
    await wait_until_async(lambda: server_tasks() == base_tasks, "every call's task to end")
    assert threading.active_count() == base_threads
    scripted.exit(run_id, 0)


async def test_server_shutdown_ends_streams_unavailable_at_once(aio, app, scripted, server):
    run_id = await start_run(aio, scripted)
    streams = [follow(aio, run_id), watch(aio), watch(aio, run_id)]
    for stream in streams:
        await stream.until(lambda s: s.messages, "the first message")
    started = time.monotonic()
    await asyncio.to_thread(server.stop, 10)  # a long grace period: streams must not use it
    assert time.monotonic() - started < 5
    for stream in streams:
        await stream.finished()
        assert stream.error is not None and stream.error.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(stream.error) == "SERVER_SHUTTING_DOWN"
    assert subscribers(server) == 0
    scripted.exit(run_id, 0)  # let the run's task end before the loop stops
    await wait_until_async(
        lambda: server.services.runs.current(run_id).state == RUN_STATE_SUCCEEDED, "the run's end"
    )


@contextlib.contextmanager
def another_server(store) -> Iterator[ServerHandle]:
    """A second server process's worth (own loop, services and hub) over the same store."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="second-server", daemon=True)
    thread.start()
    services = Services.create(store)
    running = asyncio.run_coroutine_threadsafe(
        start_server(
            Settings(
                address="127.0.0.1:0",
                stream_heartbeat_seconds=HEARTBEAT,
                stream_recheck_seconds=RECHECK,
            ),
            services,
            services.blocking.pool,
        ),
        loop,
    ).result(30)
    handle = ServerHandle(running.port, store, services, loop, running)
    try:
        yield handle
    finally:
        handle.stop(0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


async def test_after_shutdown_a_follower_resumes_on_another_server(
    aio, app, scripted, server, store
):
    run_id = await start_run(aio, scripted)
    with another_server(store) as second:
        first = follow(aio, run_id)
        for line in LINES[:3]:
            scripted.write(run_id, line)
        await first.until(lambda s: len(s.log()) == len(b"".join(LINES[:3])), "three lines")
        await asyncio.to_thread(server.stop, 10)
        await first.finished()
        assert first.error is not None and first.error.code() == grpc.StatusCode.UNAVAILABLE
        # The run goes on (its container is not the API's); the client resumes elsewhere.
        async with grpc.aio.insecure_channel(second.target) as channel:
            elsewhere = porter_bundle_pb2_grpc.PorterBundleStub(channel)
            resumed = follow(elsewhere, run_id, offset=len(first.log()))
            await resumed.until(lambda s: s.runs(), "the run")
            for line in LINES[3:]:
                scripted.write(run_id, line)
            scripted.exit(run_id, 0)
            await resumed.finished()  # no event reaches the second server: its re-checks do
        assert resumed.error is None
        assert first.log() + resumed.log(len(first.log())) == FULL
        assert resumed.messages[-1].run.state == RUN_STATE_SUCCEEDED


# --- the hub ---------------------------------------------------------------------------


async def test_a_slow_stream_overflows_into_a_store_read():
    hub = RunEvents()
    with hub.subscribe(run_key("r")) as sub:
        for i in range(MAX_PENDING_EVENTS + 3):
            sub.push(_log_event(i))
        # The queue was dropped when full; what came after is kept, and the stream is told.
        assert await sub.wait(1) == [_log_event(MAX_PENDING_EVENTS + i) for i in (1, 2)]
        assert sub.take_overflow() and not sub.take_overflow()
        assert hub.subscriber_count == 1
    assert hub.subscriber_count == 0


async def test_publishing_from_threads_reaches_the_loop_and_close_ends_waits():
    hub = RunEvents()
    with hub.subscribe(run_key("r")) as sub:
        await asyncio.to_thread(hub.log_appended, "r", 0, b"x")
        assert [e.data for e in await sub.wait(5)] == [b"x"]  # type: ignore[union-attr]
        waiting = asyncio.create_task(sub.wait(30))
        await asyncio.sleep(0)  # one turn of the loop, not a delay: the task runs up to its wait
        hub.close()
        with pytest.raises(Exception, match="shutting down"):
            await waiting
    with pytest.raises(Exception, match="shutting down"):
        hub.subscribe(run_key("r"))
    assert hub.subscriber_count == 0


def _log_event(i: int):
    from porter_bundle.service.events import LogAppended

    return LogAppended("r", i, b"")
