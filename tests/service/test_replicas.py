"""Several replicas on one PostgreSQL database: real server processes, each with its own
private Podman, sharing the database `make test-postgres` gives (skipped on SQLite).

Leases are short here (``--run-lease 5 --lease-renew 1``) so that a take-over happens within
seconds; the streams' own re-check is long (60 s) so that what a follower on another replica
receives promptly came through LISTEN/NOTIFY."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import pytest
from sqlalchemy import create_engine, text

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Run,
)
from porter_bundle.executor import LABEL_RUN_ID
from tests.conftest import POSTGRES_ENV
from tests.engine import Engine, podman_engine
from tests.helpers import serve_process, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.podman,
    pytest.mark.postgres,
    pytest.mark.xdist_group("replicas"),
    # Before any fixture: three Podman services are not started for nothing on SQLite.
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason="several replicas need PostgreSQL (make test-postgres)",
    ),
]

NS = "dev"
FINAL = (RUN_STATE_SUCCEEDED, RUN_STATE_FAILED, RUN_STATE_CANCELED)
LEASE_FLAGS = ("--run-lease", "5", "--lease-renew", "1", "--stream-recheck", "60")
CHATTY_LINES = 300

RUN_SCRIPT = r"""#!/bin/sh
case "$CNAB_ACTION" in
  install|upgrade) echo "start $CNAB_ACTION $CNAB_INSTALLATION_NAME"; usleep 300000; echo "done" ;;
  slow) echo "slow started"; sleep 30; echo "slow done" ;;
  chatty)
    i=0
    while [ $i -lt LINES ]; do echo "line $i of $CNAB_INSTALLATION_NAME"; i=$((i+1)); usleep 5000; done ;;
  uninstall) echo "bye" ;;
esac
""".replace("LINES", str(CHATTY_LINES))


def bundle(image: str) -> str:
    return json.dumps(
        {
            "schemaVersion": "v1.0.0",
            "name": "replicated",
            "version": "1.0.0",
            "invocationImages": [{"imageType": "docker", "image": image}],
            "actions": {a: {"stateless": True, "modifies": False} for a in ("slow", "chatty")},
        }
    )


@dataclass
class Replica:
    """One ``porter-bundle serve`` process and its engine."""

    name: str
    engine: Engine
    proc: subprocess.Popen[str]
    port: int
    channel: grpc.Channel
    stub: porter_bundle_pb2_grpc.PorterBundleStub

    def close(self, sig: int = signal.SIGTERM) -> str:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        return err or ""


@dataclass
class Cluster:
    url: str
    engines: list[Engine]
    image: str
    replicas: list[Replica] = field(default_factory=list)

    def start(self, index: int, *flags: str) -> Replica:
        engine = self.engines[index]
        proc, port = serve_process(
            self.url, engine.url, "--replica-id", f"r{index}", *LEASE_FLAGS, *flags
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        replica = Replica(
            f"r{index}",
            engine,
            proc,
            port,
            channel,
            porter_bundle_pb2_grpc.PorterBundleStub(channel),
        )
        if index < len(self.replicas):
            self.replicas[index] = replica
        else:
            self.replicas.append(replica)
        return replica

    def rows(self, sql: str) -> list[tuple]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[list[Engine], str]]:
    """Three private Podman services, each with the test image."""
    with contextlib.ExitStack() as stack:
        found = [stack.enter_context(podman_engine()) for _ in range(3)]
        images = {e.image("replicated", RUN_SCRIPT) for e in found}
        assert len(images) == 1
        yield found, images.pop()


@pytest.fixture
def cluster(database_url: str, engines: tuple[list[Engine], str]) -> Iterator[Cluster]:
    found, image = engines
    c = Cluster(database_url, found, image)
    try:
        for i in range(3):
            c.start(i)
        stub = c.replicas[0].stub
        stub.CreateBundle(
            pb.CreateBundleRequest(
                reference="localhost:5000/replicated:v1", bundle_json=bundle(image)
            )
        )
        yield c
    finally:
        for r in c.replicas:
            r.close()
        for e in found:
            e.podman("rm", "--all", "--force")


def install(stub, name: str) -> None:
    stub.CreateInstallation(
        pb.CreateInstallationRequest(
            installation=Installation(
                namespace=NS,
                name=name,
                bundle=BundleReference(repository="localhost:5000/replicated", tag="v1"),
            )
        )
    )


def execute(stub, name: str, action: str) -> Run:
    return stub.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=name, action=action)).run


def wait_state(stub, run_id: str, name: str, states=FINAL, timeout: float = 90.0) -> Run:
    request = pb.GetInstallationRunRequest(namespace=NS, name=name, run_id=run_id)

    def reached() -> Run | None:
        run = stub.GetInstallationRun(request).run
        return run if run.state in states else None

    return wait_until(reached, f"run {run_id} to reach {states}", timeout=timeout)


def containers(engine: Engine) -> list[str]:
    listed = json.loads(engine.podman("ps", "-a", "--format", "json").stdout or "[]")
    return [c["Names"] for c in listed if (c.get("Labels") or {}).get(LABEL_RUN_ID)]


def test_thirty_actions_spread_over_three_replicas(cluster: Cluster):
    """10 installations x 3 actions, each action sent to the next replica: all succeed, each
    replica executes its share, and no installation ever has two runs at once."""
    stubs = [r.stub for r in cluster.replicas]
    names = [f"app{i}" for i in range(10)]
    for n in names:
        install(stubs[0], n)

    def lifecycle(i: int) -> list[Run]:
        done = []
        for step, action in enumerate(("install", "upgrade", "upgrade")):
            stub = stubs[(i + step) % 3]
            run = execute(stub, names[i], action)
            done.append(wait_state(stubs[(i + step + 1) % 3], run.id, names[i]))
        return done

    with ThreadPoolExecutor(10) as pool:
        runs = [r for batch in pool.map(lifecycle, range(10)) for r in batch]
    assert len(runs) == 30
    assert [r.state for r in runs] == [RUN_STATE_SUCCEEDED] * 30, [r.message for r in runs]
    owners = dict(cluster.rows("SELECT owner, count(*) FROM runs GROUP BY owner"))
    assert owners == {"r0": 10, "r1": 10, "r2": 10}
    for n in names:
        mine = sorted(
            (r for r in runs if r.installation == n), key=lambda r: r.start_time.ToNanoseconds()
        )
        for before, after in itertools.pairwise(mine):
            assert before.complete_time.ToNanoseconds() <= after.start_time.ToNanoseconds()
    assert cluster.rows("SELECT count(*) FROM runs WHERE state IN (1, 2)") == [(0,)]
    assert all(containers(e) == [] for e in cluster.engines)


def test_hundred_concurrent_actions_on_one_installation_run_exactly_one(cluster: Cluster):
    stubs = [r.stub for r in cluster.replicas]
    install(stubs[0], "contended")
    start = threading.Barrier(20)

    def attempt(i: int) -> str:
        if i < 20:
            start.wait()
        try:
            return execute(stubs[i % 3], "contended", "slow").id
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.ABORTED, err.details()
            return ""

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(attempt, range(100)))
    accepted = [r for r in results if r]
    assert len(accepted) == 1, accepted
    listed = stubs[1].ListInstallationRuns(
        pb.ListInstallationRunsRequest(namespace=NS, name="contended")
    )
    assert [r.id for r in listed.runs] == accepted
    # The run is executed by the replica that accepted it; a cancel through any replica stops it.
    wait_state(stubs[0], accepted[0], "contended", states=(RUN_STATE_RUNNING,))
    (owner,) = cluster.rows(f"SELECT owner FROM runs WHERE id = '{accepted[0]}'")[0]
    other = next(r for r in cluster.replicas if r.name != owner)
    other.stub.CancelRun(pb.CancelRunRequest(namespace=NS, name="contended", run_id=accepted[0]))
    ended = wait_state(stubs[2], accepted[0], "contended", timeout=60)
    assert ended.state == RUN_STATE_CANCELED, ended.message
    assert all(containers(e) == [] for e in cluster.engines)


def test_a_killed_replica_s_runs_are_taken_over_after_its_lease(cluster: Cluster):
    """kill -9 of a replica with a RUNNING and a PENDING run: after the lease, the running one
    FAILS saying why (no other engine has its container), the pending one runs elsewhere; no
    row is lost, nothing stays active, and no container is left once the replica is back."""
    victim = 2
    cluster.replicas[victim].close()
    doomed = cluster.start(victim, "--max-concurrent-runs", "1")
    for n in ("busy", "queued"):
        install(doomed.stub, n)
    running = execute(doomed.stub, "busy", "slow")
    wait_state(doomed.stub, running.id, "busy", states=(RUN_STATE_RUNNING,))
    pending = execute(doomed.stub, "queued", "install")
    assert (
        doomed.stub.GetInstallationRun(
            pb.GetInstallationRunRequest(namespace=NS, name="queued", run_id=pending.id)
        ).run.state
        == RUN_STATE_PENDING
    )
    wait_until(lambda: len(containers(doomed.engine)) == 1, "the slow container to run")
    rows_before = cluster.rows("SELECT count(*) FROM runs")
    killed_at = time.monotonic()
    doomed.close(signal.SIGKILL)

    survivor = cluster.replicas[0].stub
    failed = wait_state(survivor, running.id, "busy", timeout=60)
    assert time.monotonic() - killed_at >= 3.0  # not before the 5 s lease expired
    assert failed.state == RUN_STATE_FAILED
    assert "replica r2 stopped renewing its lease" in failed.message, failed.message
    moved = wait_state(survivor, pending.id, "queued", timeout=60)
    assert moved.state == RUN_STATE_SUCCEEDED, moved.message
    (owner,) = cluster.rows(f"SELECT owner FROM runs WHERE id = '{pending.id}'")[0]
    assert owner in ("r0", "r1")
    assert cluster.rows("SELECT count(*) FROM runs") == rows_before
    assert cluster.rows("SELECT count(*) FROM runs WHERE state IN (1, 2)") == [(0,)]
    # Back on its engine, the replica removes the container of the run it lost.
    cluster.start(victim)
    wait_until(
        lambda: containers(cluster.engines[victim]) == [], "the orphan to be removed", timeout=60
    )
    assert all(containers(e) == [] for e in cluster.engines)


def test_a_follower_on_one_replica_gets_the_whole_log_of_a_run_on_another(cluster: Cluster):
    a, b, c = cluster.replicas
    install(c.stub, "talker")
    run = execute(c.stub, "talker", "chatty")
    watched: list[Run] = []

    def watch() -> None:
        req = pb.WatchInstallationRunsRequest(namespace=NS, name="talker", run_id=run.id)
        for msg in b.stub.WatchInstallationRuns(req, timeout=90):
            if msg.HasField("run"):
                watched.append(msg.run)

    watcher = threading.Thread(target=watch)
    watcher.start()
    chunks: list[tuple[int, bytes]] = []
    final: Run | None = None
    req = pb.StreamRunLogsRequest(namespace=NS, name="talker", run_id=run.id, follow=True)
    for msg in a.stub.StreamRunLogs(req, timeout=90):
        if msg.HasField("chunk"):
            chunks.append((msg.chunk.offset, msg.chunk.data))
        elif msg.HasField("run") and msg.run.state in FINAL:
            final = msg.run
    received_at = time.time()
    watcher.join(timeout=90)
    assert final is not None and final.state == RUN_STATE_SUCCEEDED, final
    # Prompt: well within the 60 s re-check, so NOTIFY brought it.
    assert received_at - final.complete_time.ToNanoseconds() / 1e9 < 10
    pos = 0
    for offset, data in chunks:
        assert offset == pos
        pos += len(data)
    log = b"".join(d for _, d in chunks)
    expected = b"".join(b"line %d of talker\n" % i for i in range(CHATTY_LINES))
    assert log == expected
    stored = c.stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name="talker", run_id=run.id)
    ).logs
    assert stored.encode() == expected
    assert [r.state for r in watched] == [
        RUN_STATE_PENDING,
        RUN_STATE_RUNNING,
        RUN_STATE_SUCCEEDED,
    ][-len(watched) :]
    assert watched[-1].state == RUN_STATE_SUCCEEDED


def test_sigterm_hands_back_pending_runs_and_exits_within_the_grace(cluster: Cluster):
    """A draining replica stops claiming and hands its PENDING run back at once (another replica
    starts it long before a lease could expire); its RUNNING run keeps its lease until then."""
    victim = 2
    cluster.replicas[victim].close()
    draining = cluster.start(victim, "--max-concurrent-runs", "1", "--grace-period", "3")
    for n in ("long", "waiting"):
        install(draining.stub, n)
    running = execute(draining.stub, "long", "slow")
    wait_state(draining.stub, running.id, "long", states=(RUN_STATE_RUNNING,))
    pending = execute(draining.stub, "waiting", "install")
    asked = time.monotonic()
    err = draining.close(signal.SIGTERM)
    assert time.monotonic() - asked < 3 + 5, "the replica did not exit within its grace period"
    assert "handed back 1 pending runs" in err

    survivor = cluster.replicas[1].stub
    moved = wait_state(survivor, pending.id, "waiting", timeout=60)
    assert moved.state == RUN_STATE_SUCCEEDED, moved.message
    (owner,) = cluster.rows(f"SELECT owner FROM runs WHERE id = '{pending.id}'")[0]
    assert owner in ("r0", "r1")
    failed = wait_state(survivor, running.id, "long", timeout=60)
    assert failed.state == RUN_STATE_FAILED and "stopped renewing its lease" in failed.message
    assert moved.start_time.ToNanoseconds() < failed.complete_time.ToNanoseconds()
    cluster.start(victim)
    wait_until(lambda: containers(cluster.engines[victim]) == [], "the orphan to go", timeout=60)
