"""The server never hangs on a container engine that accepts connections and never answers:
ExecuteAction answers UNAVAILABLE naming the engine, and SIGTERM stops the server within its
grace period and a few seconds, whatever the engine's calls are doing."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_PENDING
from tests.engine import WedgedEngine
from tests.test_cli import start

pytestmark = pytest.mark.slow

GRACE = 2
# The grace period, then at most: the run tasks' end (2 s), the blocking calls' drain (5 s)
# and the last threads (1 s), with room for a loaded machine.
EXIT_WITHIN = GRACE + 12
BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "wedged",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/wedged:v1"}],
}


def serve(tmp_path: Path, engine: WedgedEngine):  # type: ignore[no-untyped-def]
    return start(
        tmp_path,
        {},
        "--address",
        "127.0.0.1:0",
        "--database",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--container-host",
        engine.url,
        "--grace-period",
        str(GRACE),
    )


def installation(stub: porter_bundle_pb2_grpc.PorterBundleStub) -> None:
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/wedged:v1", bundle_json=json.dumps(BUNDLE)
        ),
        timeout=10,
    )
    stub.CreateInstallation(
        pb.CreateInstallationRequest(
            installation=Installation(
                namespace="dev",
                name="app",
                bundle=BundleReference(repository="localhost:5000/wedged", tag="v1"),
            )
        ),
        timeout=10,
    )


def execute(stub: porter_bundle_pb2_grpc.PorterBundleStub) -> pb.ExecuteActionResponse:
    return stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace="dev", name="app", action="install"), timeout=30
    )


def stop_in_time(proc) -> str:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=EXIT_WITHIN)
    except Exception:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the server ignored SIGTERM for {EXIT_WITHIN}s") from None
    took = time.monotonic() - started
    assert proc.returncode == 0, err
    assert took < EXIT_WITHIN, took
    return str(err)


def test_execute_on_an_engine_that_never_answers_is_unavailable_and_sigterm_exits(tmp_path):
    with WedgedEngine(tmp_path / "engine.sock") as engine:
        proc, port = serve(tmp_path, engine)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
                installation(stub)
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as raised:
                    execute(stub)
                assert time.monotonic() - started < 15
                assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
                assert engine.url in raised.value.details()
                # No run was recorded for it.
                runs = stub.ListInstallationRuns(
                    pb.ListInstallationRunsRequest(namespace="dev", name="app"), timeout=10
                )
                assert list(runs.runs) == []
                # SIGTERM while another ExecuteAction is waiting on the engine.
                failed: list[grpc.StatusCode] = []

                def call() -> None:
                    try:
                        execute(stub)
                    except grpc.RpcError as exc:
                        failed.append(exc.code())

                waiting = threading.Thread(target=call)
                waiting.start()
                time.sleep(1)
                stop_in_time(proc)
                waiting.join(30)
                assert failed, "the waiting ExecuteAction got no answer"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert any("/_ping" in r for r in engine.requests)


def test_sigterm_exits_while_runs_wait_on_a_wedged_engine(tmp_path):
    """The engine answers /_ping (the run is accepted) and then nothing: the run's engine calls
    block in their threads, and the server still stops in time."""
    with WedgedEngine(tmp_path / "engine.sock", ping=True) as engine:
        proc, port = serve(tmp_path, engine)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
                installation(stub)
                run = execute(stub).run
                assert run.state == RUN_STATE_PENDING
                deadline = time.monotonic() + 15
                while not any("/images/" in r for r in engine.requests):
                    assert time.monotonic() < deadline, engine.requests
                    time.sleep(0.1)
            err = stop_in_time(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert "stopped" in err
