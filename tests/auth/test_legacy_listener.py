"""``--legacy-address``: porter.v1alpha1.Porter alone on its own plaintext, unauthenticated
listener, as the Porter operator dials it, while the v1 API keeps its tokens."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from installation.v1alpha1 import installation_pb2 as legacy_pb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle.config import Settings
from porter_bundle.service.runs import OutputValue
from tests.auth.conftest import NS, creds, finished_run, installation


@pytest.fixture
def server_settings(token_file: Path, audit_path: Path) -> Settings:
    return Settings(
        address="127.0.0.1:0",
        legacy_address="127.0.0.1:0",
        token_file=str(token_file),
        audit_log=str(audit_path),
    )


@pytest.fixture
def legacy(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.running.legacy_port}") as channel:
        yield channel


@pytest.fixture
def outputs(server, stub):
    stub.CreateInstallation(
        pb.CreateInstallationRequest(installation=installation(NS, "web")), metadata=creds("admin")
    )
    finished_run(
        server.services,
        NS,
        "web",
        outputs=(
            OutputValue("conn", "postgres://db", "string"),
            OutputValue("password", "hunter2", "string", sensitive=True),
        ),
    )


def test_the_operators_call_needs_no_token_there_and_sensitive_values_stay_withheld(
    server, legacy, channel, outputs
):
    resp = porter_pb2_grpc.PorterStub(legacy).ListInstallationLatestOutputs(
        legacy_pb.ListInstallationLatestOutputRequest(name="web", namespace=NS), timeout=10
    )
    got = {o.name: (o.sensitive, o.value.string_value) for o in resp.outputs}
    assert got == {"conn": (False, "postgres://db"), "password": (True, "")}
    # The same call on the v1 port still needs a token.
    with pytest.raises(grpc.RpcError) as anonymous:
        porter_pb2_grpc.PorterStub(channel).ListInstallationLatestOutputs(
            legacy_pb.ListInstallationLatestOutputRequest(name="web", namespace=NS), timeout=10
        )
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_only_the_legacy_service_health_and_reflection_are_there(server, legacy):
    with pytest.raises(grpc.RpcError) as missing:
        porter_bundle_pb2_grpc.PorterBundleStub(legacy).ListInstallations(
            pb.ListInstallationsRequest(namespace=NS), timeout=10
        )
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
    health = health_pb2_grpc.HealthStub(legacy)
    for service in ("", "porter.v1alpha1.Porter"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    listed = reflection_pb2_grpc.ServerReflectionStub(legacy).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for r in listed for s in r.list_services_response.service}
    assert "porter.v1alpha1.Porter" in names and "porter.bundle.v1.PorterBundle" not in names


def test_a_bad_legacy_address_is_refused():
    with pytest.raises(ValueError, match="is not host:port"):
        Settings(legacy_address="nowhere")
    assert Settings().legacy_address == ""
