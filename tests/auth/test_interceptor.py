"""Health checks stay open; reflection is open unless configured otherwise."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from porter_bundle.auth.interceptor import Authenticator, bearer_token
from porter_bundle.config import Settings
from porter_bundle.errors import Unauthenticated
from tests.auth.conftest import creds


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
