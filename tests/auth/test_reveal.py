"""reveal_sensitive: only for secret-reader in the namespace, and every reveal is audited."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import struct_pb2

from installation.v1alpha1 import installation_pb2 as ipb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle.service.runs import OutputValue
from tests.auth.conftest import NS, creds, finished_run
from tests.helpers import failure, sensitive_bundle

SECRET_PARAM, SECRET_OUTPUT, SECRET_CRED = "hunter2-param", "s3cr3t-output", "lit-cred-value"


@pytest.fixture
def run(server, stub):
    inst = Installation(
        namespace=NS,
        name="web",
        bundle=BundleReference(repository="localhost:5000/web", version="0.1.0"),
    )
    stub.CreateInstallation(
        pb.CreateInstallationRequest(installation=inst), metadata=creds("admin")
    )
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS,
                name="creds",
                credentials=[
                    NamedValueSource(
                        name="token",
                        source=ValueSource(value=struct_pb2.Value(string_value=SECRET_CRED)),
                    ),
                    NamedValueSource(name="home", source=ValueSource(env="HOME")),
                ],
            )
        ),
        metadata=creds("admin"),
    )
    return finished_run(
        server.services,
        NS,
        "web",
        parameters={"password": SECRET_PARAM, "replicas": 2},
        sensitive=frozenset({"password"}),
        outputs=(
            OutputValue("conn", "postgres://db", "string"),
            OutputValue("password", SECRET_OUTPUT, "string", sensitive=True),
        ),
    )


def _audit(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_parameters_revealed_to_secret_reader(server, stub, run, audit_path):
    req = pb.GetInstallationRunRequest(namespace=NS, name="web", run_id=run.id)
    plain = stub.GetInstallationRun(req, metadata=creds("viewer-a")).run
    assert "password" not in plain.parameters and list(plain.sensitive_parameters) == ["password"]

    req.reveal_sensitive = True
    denied = failure(stub.GetInstallationRun, req, metadata=creds("viewer-a"))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.metadata["role"] == "secret-reader"
    assert _audit(audit_path) == []

    shown = stub.GetInstallationRun(req, metadata=creds("reader-a")).run
    assert shown.parameters["password"] == SECRET_PARAM
    assert list(shown.sensitive_parameters) == ["password"]  # still says which were sensitive
    (record,) = _audit(audit_path)
    assert record["principal"] == "reader-a"
    assert record["method"] == "/porter.bundle.v1.PorterBundle/GetInstallationRun"
    assert record["resource"] == f"installations/{NS}/web/runs/{run.id}"
    assert record["namespace"] == NS and record["time"].endswith("Z")
    assert SECRET_PARAM not in audit_path.read_text()


def test_outputs_revealed_to_secret_reader(server, stub, run, audit_path):
    req = pb.ListInstallationRunOutputsRequest(namespace=NS, name="web", reveal_sensitive=True)
    assert (
        failure(stub.ListInstallationRunOutputs, req, metadata=creds("viewer-a")).code
        == grpc.StatusCode.PERMISSION_DENIED
    )
    shown = stub.ListInstallationRunOutputs(req, metadata=creds("reader-a"))
    by_name = {o.name: o for o in shown.outputs}
    assert by_name["password"].sensitive
    assert by_name["password"].value.string_value == SECRET_OUTPUT
    assert by_name["conn"].value.string_value == "postgres://db"
    (record,) = _audit(audit_path)
    assert record["resource"] == f"installations/{NS}/web/runs/{run.id}/outputs"
    req.reveal_sensitive = False
    hidden = stub.ListInstallationRunOutputs(req, metadata=creds("reader-a"))
    assert SECRET_OUTPUT.encode() not in hidden.SerializeToString()
    assert len(_audit(audit_path)) == 1


def test_credential_values_revealed_to_secret_reader(server, stub, run, audit_path):
    req = pb.GetCredentialSetRequest(namespace=NS, name="creds")
    plain = stub.GetCredentialSet(req, metadata=creds("reader-a")).credential_set
    assert plain.credentials[0].source.redacted
    assert SECRET_CRED.encode() not in plain.SerializeToString()
    req.reveal_sensitive = True
    shown = stub.GetCredentialSet(req, metadata=creds("reader-a")).credential_set
    token = {c.name: c.source for c in shown.credentials}["token"]
    assert token.value.string_value == SECRET_CRED and not token.redacted
    export = pb.ExportCredentialSetRequest(namespace=NS, name="creds", reveal_sensitive=True)
    assert (
        failure(stub.ExportCredentialSet, export, metadata=creds("viewer-a")).code
        == grpc.StatusCode.PERMISSION_DENIED
    )
    doc = stub.ExportCredentialSet(export, metadata=creds("reader-a")).document
    assert SECRET_CRED in doc
    export.reveal_sensitive = False
    assert SECRET_CRED not in stub.ExportCredentialSet(export, metadata=creds("reader-a")).document
    assert [r["method"].rsplit("/", 1)[1] for r in _audit(audit_path)] == [
        "GetCredentialSet",
        "ExportCredentialSet",
    ]
    assert SECRET_CRED not in audit_path.read_text()


def test_reveal_checked_before_existence(server, stub, audit_path):
    req = pb.GetCredentialSetRequest(namespace=NS, name="missing", reveal_sensitive=True)
    assert (
        failure(stub.GetCredentialSet, req, metadata=creds("viewer-a")).code
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        failure(stub.GetCredentialSet, req, metadata=creds("reader-a")).code
        == grpc.StatusCode.NOT_FOUND
    )
    assert _audit(audit_path) == []


def test_legacy_latest_outputs_revealed_to_secret_reader(server, channel, run, audit_path):
    legacy = porter_pb2_grpc.PorterStub(channel)
    req = ipb.ListInstallationLatestOutputRequest(namespace=NS, name="web")
    hidden = {
        v.name: v
        for v in legacy.ListInstallationLatestOutputs(req, metadata=creds("viewer-a")).outputs
    }
    assert hidden["password"].sensitive and not hidden["password"].HasField("value")
    assert _audit(audit_path) == []
    shown = {
        v.name: v
        for v in legacy.ListInstallationLatestOutputs(req, metadata=creds("reader-a")).outputs
    }
    assert shown["password"].value.string_value == SECRET_OUTPUT
    (record,) = _audit(audit_path)
    assert record["principal"] == "reader-a"
    assert record["method"] == "/porter.v1alpha1.Porter/ListInstallationLatestOutputs"
    assert record["resource"] == f"installations/{NS}/web/outputs"


SECRET_INSTALLATION_PARAM = "inst-param-Vb52Ke"


def test_installation_parameters_revealed_to_secret_reader(stub, audit_path):
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/vault:v1.0.0", bundle_json=json.dumps(sensitive_bundle())
        ),
        metadata=creds("admin"),
    )
    inst = Installation(
        namespace=NS,
        name="vault",
        bundle=BundleReference(repository="localhost:5000/vault", version="1.0.0"),
    )
    inst.parameters.update({"password": SECRET_INSTALLATION_PARAM, "color": "red"})
    stub.CreateInstallation(
        pb.CreateInstallationRequest(installation=inst), metadata=creds("admin")
    )
    get = pb.GetInstallationRequest(namespace=NS, name="vault")
    plain = stub.GetInstallation(get, metadata=creds("reader-a")).installation
    assert "password" not in plain.parameters
    assert list(plain.sensitive_parameters) == ["password"]
    export = pb.ExportInstallationRequest(namespace=NS, name="vault")
    assert (
        SECRET_INSTALLATION_PARAM
        not in stub.ExportInstallation(export, metadata=creds("reader-a")).document
    )

    get.reveal_sensitive = export.reveal_sensitive = True
    for method, req in ((stub.GetInstallation, get), (stub.ExportInstallation, export)):
        denied = failure(method, req, metadata=creds("viewer-a"))
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        assert denied.metadata["role"] == "secret-reader"
    assert _audit(audit_path) == []

    shown = stub.GetInstallation(get, metadata=creds("reader-a")).installation
    assert shown.parameters["password"] == SECRET_INSTALLATION_PARAM
    assert list(shown.sensitive_parameters) == ["password"]
    exported = stub.ExportInstallation(export, metadata=creds("reader-a"))
    assert SECRET_INSTALLATION_PARAM in exported.document
    assert list(exported.sensitive_parameters) == ["password"]
    records = _audit(audit_path)
    assert [(r["principal"], r["method"].rsplit("/", 1)[1], r["resource"]) for r in records] == [
        ("reader-a", "GetInstallation", f"installations/{NS}/vault"),
        ("reader-a", "ExportInstallation", f"installations/{NS}/vault"),
    ]
    assert all(r["namespace"] == NS for r in records)
    assert SECRET_INSTALLATION_PARAM not in audit_path.read_text()
