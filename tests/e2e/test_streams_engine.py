"""Following real containers: StreamRunLogs and WatchInstallationRuns over Podman runs.

Real server, real SQLite, real Podman; the invocation image prints a line every 0.3 s.
"""

from __future__ import annotations

import json
import threading

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_CANCELED, RUN_STATE_RUNNING, RUN_STATE_SUCCEEDED
from porter_bundle.config import Settings
from porter_bundle.executor import ContainerExecutor
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from tests.api.test_streams import Stream
from tests.helpers import wait_until_async

pytestmark = pytest.mark.slow  # real containers: seconds each
NS, NAME = "dev", "ticker"
TICKS = 6
RUN_SCRIPT = r"""#!/bin/sh
case "$CNAB_ACTION" in
  tick) i=1; while [ $i -le 6 ]; do echo "tick $i"; i=$((i+1)); sleep 0.3; done; echo "done" >&2 ;;
  hang) trap 'echo "got TERM"; exit 0' TERM; echo "hanging"; sleep 60 & wait ;;
esac
"""
EXPECTED = "".join(f"tick {i}\n" for i in range(1, TICKS + 1)).encode() + b"done\n"


@pytest.fixture
def services(store, podman_host) -> Services:
    return Services.create(
        store,
        executor=lambda: ContainerExecutor(podman_host),
        action_settings=ActionSettings(
            run_timeout_seconds=60,
            max_concurrent_runs=4,
            cancel_grace_seconds=5,
            network=None,
            engine_retry_seconds=60,
        ),
    )


@pytest.fixture
def server_settings() -> Settings:
    return Settings(address="127.0.0.1:0", stream_heartbeat_seconds=1.0)


@pytest.fixture
async def aio(server, stub, test_image):
    image = test_image("ticker", RUN_SCRIPT)
    bundle = {
        "schemaVersion": "v1.0.0",
        "name": "ticker",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "actions": {a: {"stateless": True, "modifies": False} for a in ("tick", "hang")},
    }
    stub.CreateBundle(
        pb.CreateBundleRequest(reference="localhost:5000/ticker:v1", bundle_json=json.dumps(bundle))
    )
    inst = Installation(
        namespace=NS,
        name=NAME,
        bundle=BundleReference(repository="localhost:5000/ticker", tag="v1"),
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield porter_bundle_pb2_grpc.PorterBundleStub(channel)


def follow(aio, run_id: str, offset: int = 0) -> Stream:
    return Stream(
        aio.StreamRunLogs(
            pb.StreamRunLogsRequest(
                namespace=NS, name=NAME, run_id=run_id, offset=offset, follow=True
            )
        )
    )


def log_readers() -> list[str]:
    """Threads of the container executor that follow a container's log."""
    return [t.name for t in threading.enumerate() if t.name.startswith("porter-bundle-logs-")]


async def test_followers_of_a_real_container_get_its_whole_log(aio, server):
    run = (
        await aio.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=NAME, action="tick"))
    ).run
    watcher = Stream(
        aio.WatchInstallationRuns(pb.WatchInstallationRunsRequest(run_id=run.id))
    )  # by ID alone
    before = follow(aio, run.id)
    await before.until(lambda s: b"tick 2\n" in s.log(), "two ticks")
    during = follow(aio, run.id)
    leaver = follow(aio, run.id)
    await leaver.until(lambda s: b"tick 3\n" in s.log(), "three ticks")
    leaver.call.cancel()
    await leaver.finished()
    resumed = follow(aio, run.id, offset=len(leaver.log()))
    for stream in (before, during, resumed, watcher):
        await wait_until_async(lambda s=stream: s.ended, "the end of the run", timeout=60)
    after = follow(aio, run.id)
    await after.finished()

    stored = (
        await aio.GetInstallationRunLogs(
            pb.GetInstallationRunLogsRequest(namespace=NS, name=NAME, run_id=run.id)
        )
    ).logs.encode()
    assert stored == EXPECTED
    for stream in (before, during, after):
        assert stream.error is None, stream.error
        assert stream.log() == EXPECTED
        assert stream.runs()[-1] == (run.id, RUN_STATE_SUCCEEDED)
    for stream in (before, during):  # started while it ran: the final state comes last
        assert stream.messages[-1].run.state == RUN_STATE_SUCCEEDED
    assert leaver.log() + resumed.log(len(leaver.log())) == EXPECTED  # no gap, no repeat
    assert [state for _, state in watcher.runs()][-2:] == [RUN_STATE_RUNNING, RUN_STATE_SUCCEEDED]
    assert len(set(watcher.runs())) == len(watcher.runs())  # each state once
    await wait_until_async(lambda: server.services.events.subscriber_count == 0, "no subscribers")
    await wait_until_async(lambda: not log_readers(), "no container log reader left")


async def test_canceling_a_followed_container_ends_the_stream_with_its_last_words(aio, server):
    run = (
        await aio.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=NAME, action="hang"))
    ).run
    logs = follow(aio, run.id)
    await logs.until(
        lambda s: b"hanging\n" in s.log(),
        "the container to start",
    )
    canceled = await aio.CancelRun(pb.CancelRunRequest(namespace=NS, name=NAME, run_id=run.id))
    assert canceled.run.state == RUN_STATE_RUNNING and canceled.run.canceling
    await wait_until_async(lambda: logs.ended, "the end of the stream", timeout=30)
    assert logs.error is None
    assert logs.log() == b"hanging\ngot TERM\n"  # everything, before the final state
    assert logs.messages[-1].run.state == RUN_STATE_CANCELED
    await wait_until_async(lambda: not log_readers(), "no container log reader left")
