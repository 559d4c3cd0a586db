"""End to end: an installation whose bundle exists only in an OCI registry (real docker-registry,
real podman push and pull, real server and SQLite)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    BundleReference,
    Installation,
)
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter_bundle.service import Services
from tests.conftest import PushImage
from tests.helpers import ended_run
from tests.oci import bundle_doc, engine_services, publish_doc

pytestmark = pytest.mark.slow
NS = "dev"


@pytest.fixture
def services(store, podman_host: str, oci_registry: str) -> Iterator[Services]:
    yield from engine_services(store, podman_host, oci_registry)


def test_install_a_bundle_that_is_only_in_the_registry(
    stub, oci_registry: str, push_image: PushImage
) -> None:
    repo = f"e2e/hello-{secrets.token_hex(4)}"
    repository = f"{oci_registry}/{repo}"
    image = push_image(oci_registry, f"{repo}:installer")
    published = publish_doc(oci_registry, f"{repository}:v0.1.0", bundle_doc(image))
    assert stub.ListBundles(pb.ListBundlesRequest()).bundles == []

    inst = Installation(
        namespace=NS, name="hello", bundle=BundleReference(repository=repository, version="0.1.0")
    )
    inst.parameters.update({"greeting": "hi from the registry"})
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    started = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name="hello", action="install")
    ).run
    run = ended_run(stub, NS, "hello", started.id, timeout=120)
    logs = stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name="hello", run_id=run.id)
    )
    assert run.state == RUN_STATE_SUCCEEDED, (run, logs)
    assert run.bundle_digest == published.digest
    outputs = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name="hello", run_id=run.id)
    ).outputs
    assert {o.name: o.value.string_value for o in outputs} == {"said": "hi from the registry"}
    got = stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name="hello")).installation
    assert got.status.state == INSTALLATION_STATE_INSTALLED
    refs = {b.reference for b in stub.ListBundles(pb.ListBundlesRequest()).bundles}
    assert refs == {f"{repository}:v0.1.0", f"{repository}@{published.digest}"}
