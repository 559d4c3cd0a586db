"""TLS and mutual TLS with certificates made here; an untrusted client certificate is refused."""

from __future__ import annotations

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.config import Settings
from tests.auth.conftest import NS, OTHER, PRINCIPALS, creds, write_token_file
from tests.auth.pki import Issued, Pki, make_pki
from tests.helpers import failure


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server_settings(request, pki, tmp_path) -> Settings:
    tokens = write_token_file(
        tmp_path / "tokens.yaml", {**PRINCIPALS, "deployer": {"viewer": [NS]}}
    )
    mutual = getattr(request, "param", "tls") == "mtls"
    return Settings(
        address="127.0.0.1:0",
        token_file=str(tokens),
        tls_cert=str(pki.dir / "server.pem"),
        tls_key=str(pki.dir / "server.key"),
        tls_client_ca=str(pki.dir / "ca.pem") if mutual else "",
    )


def _channel(server, pki: Pki, client: Issued | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.secure_channel(
        server.target, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )


def test_tls_with_token(server, pki):
    with _channel(server, pki) as ch:
        stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
        page = stub.ListInstallations(
            pb.ListInstallationsRequest(namespace=NS), metadata=creds("viewer-a"), timeout=10
        )
        assert page.total_size == 0
        missing = failure(stub.ListInstallations, pb.ListInstallationsRequest(namespace=NS))
        assert missing.code == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(server.target) as plain:
        stub = porter_bundle_pb2_grpc.PorterBundleStub(plain)
        refused = failure(
            stub.ListInstallations,
            pb.ListInstallationsRequest(namespace=NS),
            metadata=creds("viewer-a"),
            timeout=5,
        )
        assert refused.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("server_settings", ["mtls"], indirect=True)
def test_mutual_tls_certificate_is_the_principal(server, pki):
    with _channel(server, pki, pki.client) as ch:
        stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
        # No token: the certificate's CN "deployer" is the principal, with its token file roles.
        page = stub.ListInstallations(pb.ListInstallationsRequest(namespace=NS), timeout=10)
        assert page.total_size == 0
        denied = failure(stub.ListInstallations, pb.ListInstallationsRequest(namespace=OTHER))
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        assert denied.metadata["principal"] == "deployer"
        # A token still identifies its own principal.
        stub.ListInstallations(
            pb.ListInstallationsRequest(namespace=OTHER), metadata=creds("all-b"), timeout=10
        )


@pytest.mark.parametrize("server_settings", ["mtls"], indirect=True)
def test_mutual_tls_refuses_untrusted_or_missing_client_certificate(server, pki):
    for client in (pki.stranger, None):
        with _channel(server, pki, client) as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            refused = failure(
                stub.ListInstallations,
                pb.ListInstallationsRequest(namespace=NS),
                metadata=creds("admin"),
                timeout=5,
            )
            assert refused.code == grpc.StatusCode.UNAVAILABLE
