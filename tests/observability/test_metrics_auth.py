"""Authentication refusals by reason, audited reveals and the access log of a real server
that authenticates (a token file), read from its /metrics and its log records."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource
from porter_bundle.auth.tokens import hash_token
from porter_bundle.config import Settings
from tests.helpers import failure
from tests.observability.test_metrics import grpc_value, metrics_port, scrape, value
from tests.service.action_bundle import NS, src


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    entries = [
        {
            "name": "admin",
            "token": hash_token("tok-admin"),
            "roles": {"operator": ["*"], "secret-reader": ["*"]},
        },
        {"name": "viewer", "token": hash_token("tok-viewer"), "roles": {"viewer": [NS]}},
    ]
    path.write_text(yaml.safe_dump(entries))
    return path


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def server_settings(tmp_path, token_file) -> Settings:
    return Settings(
        address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
        token_file=str(token_file),
        audit_log=str(tmp_path / "audit.jsonl"),
    )


def test_refusals_by_reason_reveals_and_the_access_log(server, stub, caplog):
    request = pb.ListInstallationsRequest(namespace=NS)
    caplog.set_level(logging.DEBUG, logger="porter_bundle.access")
    assert failure(stub.ListInstallations, request).reason == "TOKEN_MISSING"
    assert failure(stub.ListInstallations, request, metadata=auth("nope")).reason == "TOKEN_UNKNOWN"
    create = pb.CreateCredentialSetRequest(
        credential_set=CredentialSet(
            namespace=NS,
            name="s",
            credentials=[NamedValueSource(name="t", source=src(value="v-secret-1"))],
        )
    )
    assert (
        failure(stub.CreateCredentialSet, create, metadata=auth("tok-viewer")).reason
        == "ROLE_REQUIRED"
    )
    stub.CreateCredentialSet(create, metadata=auth("tok-admin"))
    export = pb.ExportCredentialSetRequest(namespace=NS, name="s", reveal_sensitive=True)
    stub.ExportCredentialSet(export, metadata=auth("tok-admin"))
    samples = scrape(metrics_port(server))
    for reason in ("TOKEN_MISSING", "TOKEN_UNKNOWN", "ROLE_REQUIRED"):
        assert value(samples, "porter_bundle_auth_refusals_total", reason=reason) == 1, reason
    assert value(samples, "porter_bundle_reveals_total", method="ExportCredentialSet") == 1
    assert (
        grpc_value(
            samples, "grpc_server_handled_total", "ListInstallations", grpc_code="UNAUTHENTICATED"
        )
        == 2
    )
    assert (
        grpc_value(
            samples,
            "grpc_server_handled_total",
            "CreateCredentialSet",
            grpc_code="PERMISSION_DENIED",
        )
        == 1
    )
    access = [r for r in caplog.records if r.name == "porter_bundle.access"]
    assert [(r.method.rsplit("/", 1)[-1], r.code, r.principal) for r in access] == [
        ("ListInstallations", "UNAUTHENTICATED", ""),
        ("ListInstallations", "UNAUTHENTICATED", ""),
        ("CreateCredentialSet", "PERMISSION_DENIED", ""),
        ("CreateCredentialSet", "OK", "admin"),
        ("ExportCredentialSet", "OK", "admin"),
    ]
    assert all(r.levelno == logging.DEBUG and r.duration_seconds >= 0 for r in access)
    assert "v-secret-1" not in caplog.text
