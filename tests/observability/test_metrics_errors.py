"""Executor and registry errors by kind on /metrics: a pull from a registry on a closed local
port and a container the engine refuses, counted where they become domain errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import RUN_STATE_FAILED
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.config import Settings
from porter_bundle.executor import ContainerResult
from porter_bundle.service import Services
from porter_bundle.service.observe import ERROR_KINDS
from tests.fake_executor import FakeExecutor, services_with
from tests.helpers import ended_run, failure
from tests.observability.test_metrics import metrics_port, scrape, value
from tests.service.action_bundle import NS, create_plain_app


@pytest.fixture
def server_settings() -> Settings:
    return Settings(address="127.0.0.1:0", metrics_address="127.0.0.1:0")


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def services(store, fake, closed_port) -> Iterator[Services]:
    client = RegistryClient(insecure_hosts=frozenset({f"127.0.0.1:{closed_port}"}))
    try:
        yield services_with(store, fake, registry=client)
    finally:
        client.close()


def test_registry_and_executor_errors_are_counted_by_kind(server, stub, fake, closed_port):
    reference = f"127.0.0.1:{closed_port}/app:v1"
    pulled = failure(stub.PullBundle, pb.PullBundleRequest(reference=reference))
    assert pulled.code == grpc.StatusCode.UNAVAILABLE

    create_plain_app(stub)
    fake.behaviour = lambda spec: ContainerResult(exit_code=None, error="image not known")
    run = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name="app", action="install")
    ).run
    assert ended_run(stub, NS, "app", run.id).state == RUN_STATE_FAILED

    samples = scrape(metrics_port(server))
    assert value(samples, "porter_bundle_registry_errors_total", kind="unavailable") == 1
    assert value(samples, "porter_bundle_executor_errors_total", kind="refused") == 1
    assert value(samples, "porter_bundle_executor_errors_total", kind="unavailable") == 0
    # The only label is a bounded kind: no host, image or message.
    kinds = {v for (name, labels) in samples if name.endswith("_errors_total") for _, v in labels}
    assert kinds <= set(ERROR_KINDS)
    assert str(closed_port) not in str(samples)
