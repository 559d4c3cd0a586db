"""/metrics of a real server after a scenario, read with the Prometheus text parser.

The server, its store and the HTTP endpoint are real; the executor is the scripted one at
its boundary (runs against a real engine are in tests/e2e)."""

from __future__ import annotations

import json
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_CANCELED, RUN_STATE_FAILED, RUN_STATE_SUCCEEDED
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource
from porter_bundle.config import Settings
from porter_bundle.executor import ContainerResult
from porter_bundle.observability import Metrics, Observability
from porter_bundle.service import Services
from tests.fake_executor import FakeExecutor, services_with
from tests.helpers import ended_run, failure, wait_until
from tests.service.action_bundle import BUNDLE, NS, REF, src

SERVICE = "porter.bundle.v1.PorterBundle"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of /metrics, by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def grpc_value(samples: Samples, name: str, method: str, **labels: str) -> float:
    return value(
        samples, name, grpc_service=SERVICE, grpc_method=method, grpc_type="unary", **labels
    )


@pytest.fixture
def server_settings() -> Settings:
    return Settings(address="127.0.0.1:0", metrics_address="127.0.0.1:0")


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def services(store, fake) -> Services:
    return services_with(store, fake)


def metrics_port(server) -> int:
    port = server.running.observability.metrics_port
    assert port
    return port


def add_installation(stub, name: str) -> None:
    inst = Installation(
        namespace=NS,
        name=name,
        bundle=BundleReference(repository="localhost:5000/app", tag="v1.0.0"),
        credential_sets=["creds"],
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))


def test_metrics_after_calls_actions_a_failure_and_a_cancel(server, stub, channel, fake):
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference=REF, bundle_json=json.dumps({**BUNDLE, "parameters": {}, "outputs": {}})
        )
    )
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS,
                name="creds",
                credentials=[
                    NamedValueSource(name="token", source=src(value="tok-metric-secret")),
                    NamedValueSource(name="kubeconfig", source=src(value="apiVersion: v1")),
                ],
            )
        )
    )
    for name in ("ok", "bad", "stopped"):
        add_installation(stub, name)
    for _ in range(2):
        stub.ListInstallations(pb.ListInstallationsRequest(namespace=NS))
    missing = failure(stub.GetInstallation, pb.GetInstallationRequest(namespace=NS, name="nope"))
    assert missing.code == grpc.StatusCode.NOT_FOUND

    fake.behaviour = lambda spec: ContainerResult(
        exit_code=1 if spec.env["CNAB_INSTALLATION_NAME"] == "bad" else 0
    )
    runs = {}
    for name in ("ok", "bad"):
        run = stub.ExecuteAction(
            pb.ExecuteActionRequest(namespace=NS, name=name, action="install")
        ).run
        runs[name] = run.id
        ended_run(stub, NS, name, run.id)
    fake.hold.set()
    run = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name="stopped", action="install")
    ).run
    runs["stopped"] = run.id
    wait_until(lambda: any(s.run_id == run.id for s in fake.specs), "the run to start")
    mid = scrape(metrics_port(server))
    assert value(mid, "porter_bundle_runs_active") == 1
    assert value(mid, "porter_bundle_runs_pending") == 0
    stub.CancelRun(pb.CancelRunRequest(namespace=NS, name="stopped", run_id=run.id))
    states = {n: ended_run(stub, NS, n, r).state for n, r in runs.items()}
    assert states == {
        "ok": RUN_STATE_SUCCEEDED,
        "bad": RUN_STATE_FAILED,
        "stopped": RUN_STATE_CANCELED,
    }
    # A server stream: health's Watch sends the current status, then the client leaves.
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()

    def watch_ended() -> Samples | None:
        got = scrape(metrics_port(server))
        labels = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Watch"}
        ended = value(
            got,
            "grpc_server_handled_total",
            grpc_type="server_stream",
            grpc_code="CANCELLED",
            **labels,
        )
        return got if ended == 1 else None

    samples = wait_until(watch_ended, "the Watch stream to be counted as ended")
    health = {
        "grpc_service": "grpc.health.v1.Health",
        "grpc_method": "Watch",
        "grpc_type": "server_stream",
    }
    assert value(samples, "grpc_server_msg_sent_total", **health) >= 1
    assert value(samples, "grpc_server_msg_received_total", **health) == 1
    assert value(samples, "grpc_server_in_flight", **health) == 0

    assert grpc_value(samples, "grpc_server_started_total", "ListInstallations") == 2
    assert (
        grpc_value(samples, "grpc_server_handled_total", "ListInstallations", grpc_code="OK") == 2
    )
    assert grpc_value(samples, "grpc_server_handling_seconds_count", "ListInstallations") == 2
    assert grpc_value(samples, "grpc_server_msg_received_total", "ListInstallations") == 2
    assert grpc_value(samples, "grpc_server_msg_sent_total", "ListInstallations") == 2
    assert (
        grpc_value(samples, "grpc_server_handled_total", "GetInstallation", grpc_code="NOT_FOUND")
        == 1
    )
    assert grpc_value(samples, "grpc_server_msg_sent_total", "GetInstallation") == 0
    assert grpc_value(samples, "grpc_server_handled_total", "ExecuteAction", grpc_code="OK") == 3
    assert grpc_value(samples, "grpc_server_handled_total", "CancelRun", grpc_code="OK") == 1

    assert value(samples, "porter_bundle_runs_accepted_total", action="install") == 3
    assert value(samples, "porter_bundle_runs_started_total", action="install") == 3
    for result in ("succeeded", "failed", "canceled"):
        assert (
            value(samples, "porter_bundle_runs_finished_total", action="install", result=result)
            == 1
        ), result
        assert (
            value(
                samples, "porter_bundle_run_duration_seconds_count", action="install", result=result
            )
            == 1
        )
    assert value(samples, "porter_bundle_run_cancellations_total") == 1
    assert value(samples, "porter_bundle_run_failures_total", cause="exit_code") == 1
    assert value(samples, "porter_bundle_runs_active") == 0
    size = value(samples, "porter_bundle_database_pool_connections", state="size")
    assert size == server.store.pool_usage()[1] >= 1
    assert 0 <= value(samples, "porter_bundle_database_pool_connections", state="in_use") <= size
    assert value(samples, "porter_bundle_runs_pending") == 0
    # No label carries a run ID, and the credential appears nowhere.
    label_values = {v for (_, labels) in samples for _, v in labels}
    assert not label_values & set(runs.values())
    assert "tok-metric-secret" not in str(samples)


def test_each_server_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.auth_refused("TOKEN_MISSING")
    assert (
        first.registry.get_sample_value(
            "porter_bundle_auth_refusals_total", {"reason": "TOKEN_MISSING"}
        )
        == 1
    )
    assert (
        second.registry.get_sample_value(
            "porter_bundle_auth_refusals_total", {"reason": "TOKEN_MISSING"}
        )
        is None
    )


def test_metrics_are_off_by_default(services):
    observability = Observability(Settings(), services)
    try:
        assert observability.metrics is None and observability.interceptors() == []
        assert observability.wrappers() == []  # nor a call wrapper (the log level is INFO)
        observability.start()
        assert observability.metrics_port is None
    finally:
        observability.close()
