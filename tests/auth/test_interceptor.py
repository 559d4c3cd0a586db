"""The interceptor: health open, reflection open unless configured otherwise, tokens
re-read without a restart, RPCs without a rule refused."""

from __future__ import annotations

import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle.auth.authz import authorize
from porter_bundle.auth.interceptor import Authenticator, bearer_token
from porter_bundle.auth.roles import LOCAL
from porter_bundle.config import Settings
from porter_bundle.errors import PermissionDenied, Unauthenticated
from tests.auth.conftest import NS, PRINCIPALS, creds, write_token_file
from tests.helpers import failure


def _reflect(channel, metadata=None):
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
        metadata=metadata,
        timeout=10,
    )
    return [s.name for r in responses for s in r.list_services_response.service]


def test_health_open_without_token(server, channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == (
        health_pb2.HealthCheckResponse.SERVING
    )


def test_reflection_open_by_default(server, channel):
    assert "porter.bundle.v1.PorterBundle" in _reflect(channel)


@pytest.fixture
def server_settings(request, token_file) -> Settings:
    return Settings(
        address="127.0.0.1:0",
        token_file=str(token_file),
        reflection_requires_auth=getattr(request, "param", False),
    )


@pytest.mark.parametrize("server_settings", [True], indirect=True)
def test_reflection_requires_auth_when_configured(server, channel):
    with pytest.raises(grpc.RpcError) as err:
        _reflect(channel)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert "porter.bundle.v1.PorterBundle" in _reflect(channel, creds("viewer-a"))
    health = health_pb2_grpc.HealthStub(channel)
    health.Check(health_pb2.HealthCheckRequest())


def test_bearer_token_parsing():
    assert bearer_token((("authorization", "Bearer abc"),)) == "abc"
    assert bearer_token((("Authorization", "bearer  abc "),)) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) == ""
    assert bearer_token(None) == ""


def test_mutual_tls_without_token_file_gets_every_role():
    who = Authenticator(None, mtls=True).authenticate((), "deployer")
    assert who.name == "deployer" and who.has_everywhere("operator")
    with pytest.raises(Unauthenticated) as err:
        Authenticator(None, mtls=True).authenticate((), None)
    assert err.value.reason == "TOKEN_MISSING"


def test_rpc_without_rule_is_refused():
    with pytest.raises(PermissionDenied) as err:
        authorize(None, object(), LOCAL, "/porter.bundle.v1.PorterBundle/NewRpc")
    assert err.value.reason == "NO_ACCESS_RULE"


def test_token_revoked_without_restart(server, stub, token_file):
    req = pb.ListInstallationsRequest(namespace=NS)
    stub.ListInstallations(req, metadata=creds("viewer-a"))
    write_token_file(token_file, {"editor-a": PRINCIPALS["editor-a"]})
    st = token_file.stat()  # a rewrite within one mtime tick still differs in size here
    os.utime(token_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    revoked = failure(stub.ListInstallations, req, metadata=creds("viewer-a"))
    assert (revoked.code, revoked.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_UNKNOWN")
    stub.ListInstallations(req, metadata=creds("editor-a"))


def test_undecodable_bytes_are_refused_after_authentication(channel):
    """Bytes that are no request: a caller without credentials learns only UNAUTHENTICATED; an
    authenticated one gets INVALID_ARGUMENT (MALFORMED_REQUEST), never UNKNOWN."""
    path = "/porter.bundle.v1.PorterBundle/GetInstallation"
    unary = channel.unary_unary(path)
    f = failure(unary, b"\x12\x02\xff\xfe", timeout=10)
    assert f.code == grpc.StatusCode.UNAUTHENTICATED and f.reason == "TOKEN_MISSING"
    f = failure(unary, b"\x12\x02\xff\xfe", metadata=creds("viewer-a"), timeout=10)
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and f.reason == "MALFORMED_REQUEST"
