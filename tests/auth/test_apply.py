"""ApplyInstallation: editor stores the document; starting the run it decides needs operator."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter_bundle.service import Services
from tests.auth.conftest import NS, creds
from tests.fake_executor import FakeExecutor
from tests.helpers import failure
from tests.porter_documents import bundle_json

DOC = f"""schemaType: Installation
schemaVersion: 1.0.2
namespace: {NS}
name: web
bundle: {{repository: localhost:5000/web, version: 0.1.0}}
credentialSets: [creds]
""".encode()


@pytest.fixture
def services(store) -> Services:
    fake = FakeExecutor()
    return Services.create(store, executor=lambda: fake)


@pytest.fixture
def world(server, stub):
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/web:v0.1.0", bundle_json=bundle_json("web", "0.1.0", {})
        ),
        metadata=creds("admin"),
    )
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS,
                name="creds",
                credentials=[NamedValueSource(name="username", source=ValueSource(env="HOME"))],
            )
        ),
        metadata=creds("admin"),
    )
    yield
    asyncio.run_coroutine_threadsafe(server.services.actions.wait_idle(), server.loop).result(10)


def test_apply_that_starts_a_run_needs_operator(server, stub, world):
    req = pb.ApplyInstallationRequest(document=DOC)
    dry = stub.ApplyInstallation(
        pb.ApplyInstallationRequest(document=DOC, dry_run=True), metadata=creds("editor-a")
    )
    assert dry.decision == pb.APPLY_DECISION_INSTALL and not dry.HasField("run")
    denied = failure(stub.ApplyInstallation, req, metadata=creds("editor-a"))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.metadata["role"] == "operator"
    done = stub.ApplyInstallation(req, metadata=creds("operator-a"))
    assert done.decision == pb.APPLY_DECISION_INSTALL and done.run.id
