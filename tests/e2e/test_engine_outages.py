"""Runs that tell the truth through outages of the container engine: a real Podman service
SIGKILLed mid-run and started again on the same socket and storage, and one stopped before
ExecuteAction is called. A real server (port 0) over a real SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import RUN_STATE_RUNNING, RUN_STATE_SUCCEEDED
from porter_bundle.api.servicers import SERVICE
from porter_bundle.config import Settings
from porter_bundle.executor import LABEL_MANAGED, ContainerExecutor
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from tests.engine import Engine, podman_engine
from tests.helpers import ended_run, failure, result_bundle_installations, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.slow]
NS = "dev"
REF = "localhost:5000/outage:v1"
# Slow enough that the engine is down for part of it; the outputs prove the re-attach.
SCRIPT = r"""#!/bin/sh
mkdir -p /cnab/app/outputs
echo "start $CNAB_INSTALLATION_NAME"
sleep 8
echo "done install"
printf 'out-%s' "$CNAB_INSTALLATION_NAME" > /cnab/app/outputs/result
"""


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A Podman service of this test's own (it is killed and started again)."""
    with podman_engine() as own:
        yield own


@pytest.fixture
def server_settings() -> Settings:
    return Settings(address="127.0.0.1:0", health_probe_seconds=0.2)


@pytest.fixture
def services(store, engine) -> Services:
    return Services.create(
        store,
        executor=lambda: ContainerExecutor(engine.url, probe_timeout_seconds=2),
        action_settings=ActionSettings(
            run_timeout_seconds=120,
            max_concurrent_runs=4,
            cancel_grace_seconds=2,
            network=None,
            engine_retry_seconds=90,
        ),
    )


def add_installations(stub, engine: Engine, names: list[str]) -> None:
    result_bundle_installations(stub, REF, engine.image("outage", SCRIPT), NS, names)


def install(stub, name: str) -> str:
    request = pb.ExecuteActionRequest(namespace=NS, name=name, action="install")
    return str(stub.ExecuteAction(request, timeout=30).run.id)


def run_of(stub, name: str, run_id: str):
    request = pb.GetInstallationRunRequest(namespace=NS, name=name, run_id=run_id)
    return stub.GetInstallationRun(request, timeout=10).run


def logs_of(stub, name: str, run_id: str) -> str:
    request = pb.GetInstallationRunLogsRequest(namespace=NS, name=name, run_id=run_id)
    return str(stub.GetInstallationRunLogs(request, timeout=10).logs)


def managed_containers(engine: Engine) -> list[str]:
    listed = engine.podman("ps", "-a", "-q", "--filter", f"label={LABEL_MANAGED}=true")
    return listed.stdout.split()


def test_the_engine_killed_mid_run_and_started_again(server, stub, engine):
    names = ["one", "two", "three"]
    add_installations(stub, engine, names)
    runs = {name: install(stub, name) for name in names}
    for name, run_id in runs.items():
        wait_until(
            lambda n=name, r=run_id: logs_of(stub, n, r).startswith(f"start {n}\n"),
            f"run {run_id} to start",
            timeout=60,
        )

    engine.service.kill()
    for name, run_id in runs.items():
        wait_until(
            lambda n=name, r=run_id: "unreachable" in run_of(stub, n, r).message,
            "the run to say the engine is unreachable",
            timeout=30,
        )
        assert run_of(stub, name, run_id).state == RUN_STATE_RUNNING
    engine.service.start()

    for name, run_id in runs.items():
        ended = ended_run(stub, NS, name, run_id, timeout=90)
        assert ended.state == RUN_STATE_SUCCEEDED, ended.message
        assert ended.message == ""
        # The whole log once: what came before the outage, and what came during and after.
        assert logs_of(stub, name, run_id) == f"start {name}\ndone install\n"
        outputs = stub.ListInstallationRunOutputs(
            pb.ListInstallationRunOutputsRequest(namespace=NS, name=name, run_id=run_id),
            timeout=10,
        ).outputs
        assert [(o.name, o.value.string_value) for o in outputs] == [("result", f"out-{name}")]
    wait_until(lambda: managed_containers(engine) == [], "no managed container left", timeout=30)


def health_of(channel) -> int:
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status)


def test_the_engine_stopped_before_the_call_is_refused(server, channel, stub, engine):
    add_installations(stub, engine, ["app"])
    serving = health_pb2.HealthCheckResponse.SERVING
    wait_until(lambda: health_of(channel) == serving, "PorterBundle to serve")

    engine.service.stop()
    refused = failure(install, stub, "app")
    assert refused.code == grpc.StatusCode.UNAVAILABLE
    assert refused.reason == "CONTAINER_ENGINE_UNAVAILABLE" and engine.url in refused.message
    listed = stub.ListInstallationRuns(
        pb.ListInstallationRunsRequest(namespace=NS, name="app"), timeout=10
    )
    assert list(listed.runs) == []  # refused before a run was recorded
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    wait_until(lambda: health_of(channel) == not_serving, "PorterBundle to stop serving")

    engine.service.start()
    wait_until(lambda: health_of(channel) == serving, "PorterBundle to serve again")
    run_id = install(stub, "app")
    ended = ended_run(stub, NS, "app", run_id, timeout=60)
    assert ended.state == RUN_STATE_SUCCEEDED, ended.message
    # Removed once the run's end is stored.
    wait_until(lambda: managed_containers(engine) == [], "no managed container left", timeout=30)
