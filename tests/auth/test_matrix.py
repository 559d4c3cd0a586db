"""Every RPC x {no token, bad token, right token wrong namespace, role too weak, role enough}.

Parametrized from the permission table: an RPC added without a rule fails
``test_every_rpc_has_a_rule`` and has no request here, which fails ``test_every_rpc_has_a_case``.
The resources addressed do not exist, so a caller with rights sees NOT_FOUND (or succeeds)
while one without sees PERMISSION_DENIED: rights are checked before existence.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import symbol_database

from installation.v1alpha1 import installation_pb2 as ipb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter_bundle.auth import permissions
from porter_bundle.auth.permissions import RULES, Scope
from tests.auth.conftest import NS, call, installation
from tests.helpers import failure

OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
RUN_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
_PB = "/porter.bundle.v1.PorterBundle/"
_LEGACY = "/porter.v1alpha1.Porter/"

_env = ValueSource(env="HOME")


def _doc(kind: str, body: str) -> bytes:
    return f"schemaType: {kind}\nnamespace: {NS}\nname: thing\n{body}".encode()


# The request of each RPC, addressing namespace team-a, and its status for a caller with rights.
CASES: dict[str, tuple[object, grpc.StatusCode]] = {
    _PB + "ListInstallations": (pb.ListInstallationsRequest(namespace=NS), OK),
    _PB + "GetInstallation": (pb.GetInstallationRequest(namespace=NS, name="web"), NOT_FOUND),
    _PB + "CreateInstallation": (
        pb.CreateInstallationRequest(installation=installation(NS, "web")),
        OK,
    ),
    _PB + "UpdateInstallation": (
        pb.UpdateInstallationRequest(installation=installation(NS, "web")),
        NOT_FOUND,
    ),
    _PB + "DeleteInstallation": (pb.DeleteInstallationRequest(namespace=NS, name="web"), NOT_FOUND),
    _PB + "ListInstallationRuns": (
        pb.ListInstallationRunsRequest(namespace=NS, name="web"),
        NOT_FOUND,
    ),
    _PB + "GetInstallationRun": (
        pb.GetInstallationRunRequest(namespace=NS, name="web", run_id=RUN_ID),
        NOT_FOUND,
    ),
    _PB + "ListInstallationRunOutputs": (
        pb.ListInstallationRunOutputsRequest(namespace=NS, name="web"),
        NOT_FOUND,
    ),
    _PB + "ExecuteAction": (
        pb.ExecuteActionRequest(namespace=NS, name="web", action="install"),
        NOT_FOUND,
    ),
    _PB + "CancelRun": (pb.CancelRunRequest(namespace=NS, name="web", run_id=RUN_ID), NOT_FOUND),
    _PB + "GetInstallationRunLogs": (
        pb.GetInstallationRunLogsRequest(namespace=NS, name="web", run_id=RUN_ID),
        NOT_FOUND,
    ),
    _PB + "ListCredentialSets": (pb.ListCredentialSetsRequest(namespace=NS), OK),
    _PB + "GetCredentialSet": (pb.GetCredentialSetRequest(namespace=NS, name="c"), NOT_FOUND),
    _PB + "CreateCredentialSet": (
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS, name="c", credentials=[NamedValueSource(name="x", source=_env)]
            )
        ),
        OK,
    ),
    _PB + "UpdateCredentialSet": (
        pb.UpdateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS, name="c", credentials=[NamedValueSource(name="x", source=_env)]
            )
        ),
        NOT_FOUND,
    ),
    _PB + "DeleteCredentialSet": (pb.DeleteCredentialSetRequest(namespace=NS, name="c"), NOT_FOUND),
    _PB + "ListParameterSets": (pb.ListParameterSetsRequest(namespace=NS), OK),
    _PB + "GetParameterSet": (pb.GetParameterSetRequest(namespace=NS, name="p"), NOT_FOUND),
    _PB + "CreateParameterSet": (
        pb.CreateParameterSetRequest(
            parameter_set=ParameterSet(
                namespace=NS, name="p", parameters=[NamedValueSource(name="x", source=_env)]
            )
        ),
        OK,
    ),
    _PB + "UpdateParameterSet": (
        pb.UpdateParameterSetRequest(
            parameter_set=ParameterSet(
                namespace=NS, name="p", parameters=[NamedValueSource(name="x", source=_env)]
            )
        ),
        NOT_FOUND,
    ),
    _PB + "DeleteParameterSet": (pb.DeleteParameterSetRequest(namespace=NS, name="p"), NOT_FOUND),
    _PB + "ListBundles": (pb.ListBundlesRequest(), OK),
    _PB + "GetBundle": (pb.GetBundleRequest(reference="localhost:5000/none:v1"), NOT_FOUND),
    _PB + "CreateBundle": (
        pb.CreateBundleRequest(reference="localhost:5000/none:v1", bundle_json=b"{}"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    _PB + "UpdateBundle": (
        pb.UpdateBundleRequest(
            reference="localhost:5000/none:v1",
            bundle_json='{"schemaVersion": "v1.0.0", "name": "none", "version": "1.0.0",'
            ' "invocationImages": []}',
        ),
        NOT_FOUND,
    ),
    _PB + "DeleteBundle": (pb.DeleteBundleRequest(reference="localhost:5000/none:v1"), NOT_FOUND),
    # The test server has no registry client: the call is let through, then refused as such.
    _PB + "PullBundle": (
        pb.PullBundleRequest(reference="localhost:5000/none:v1"),
        grpc.StatusCode.UNAVAILABLE,
    ),
    _PB + "WatchInstallationRuns": (
        pb.WatchInstallationRunsRequest(namespace=NS, name="web"),
        NOT_FOUND,
    ),
    _PB + "StreamRunLogs": (
        pb.StreamRunLogsRequest(namespace=NS, name="web", run_id=RUN_ID),
        NOT_FOUND,
    ),
    _PB + "ApplyInstallation": (
        pb.ApplyInstallationRequest(
            document=_doc(
                "Installation",
                "schemaVersion: 1.0.2\nbundle: {repository: localhost:5000/none, version: 0.1.0}\n",
            )
        ),
        NOT_FOUND,
    ),
    _PB + "ApplyCredentialSet": (
        pb.ApplyCredentialSetRequest(
            document=_doc(
                "CredentialSet",
                "schemaVersion: 1.0.1\ncredentials: [{name: x, source: {env: HOME}}]\n",
            )
        ),
        OK,
    ),
    _PB + "ApplyParameterSet": (
        pb.ApplyParameterSetRequest(
            document=_doc(
                "ParameterSet",
                "schemaVersion: 1.1.0\nparameters: [{name: x, source: {env: HOME}}]\n",
            )
        ),
        OK,
    ),
    _PB + "ExportInstallation": (pb.ExportInstallationRequest(namespace=NS, name="web"), NOT_FOUND),
    _PB + "ExportCredentialSet": (pb.ExportCredentialSetRequest(namespace=NS, name="c"), NOT_FOUND),
    _PB + "ExportParameterSet": (pb.ExportParameterSetRequest(namespace=NS, name="p"), NOT_FOUND),
    _PB + "ListClaims": (pb.ListClaimsRequest(namespace=NS), OK),
    _PB + "GetClaim": (pb.GetClaimRequest(namespace=NS, name="web", claim_id=RUN_ID), NOT_FOUND),
    _PB + "ListClaimResults": (
        pb.ListClaimResultsRequest(namespace=NS, name="web", claim_id=RUN_ID),
        NOT_FOUND,
    ),
    _PB + "GetClaimResult": (
        pb.GetClaimResultRequest(namespace=NS, name="web", claim_id=RUN_ID, result_id=RUN_ID),
        NOT_FOUND,
    ),
    _PB + "GetInstallationStatus": (
        pb.GetInstallationStatusRequest(namespace=NS, name="web"),
        NOT_FOUND,
    ),
    _LEGACY + "ListInstallations": (ipb.ListInstallationsRequest(namespace=NS), OK),
    _LEGACY + "ListInstallationLatestOutputs": (
        ipb.ListInstallationLatestOutputRequest(namespace=NS, name="web"),
        NOT_FOUND,
    ),
}

# Per rule: (who has just enough, who has too little, who has it in the wrong namespace).
_ROLES = {
    ("viewer", Scope.NAMESPACE): ("viewer-a", "secret-a", "all-b"),
    ("viewer", Scope.LIST): ("viewer-a", "secret-a", "all-b"),
    ("viewer", Scope.RUN): ("viewer-a", "secret-a", "all-b"),
    ("editor", Scope.NAMESPACE): ("editor-a", "viewer-a", "all-b"),
    ("editor", Scope.DOCUMENT): ("editor-a", "viewer-a", "all-b"),
    ("operator", Scope.NAMESPACE): ("operator-a", "editor-a", "all-b"),
    ("viewer", Scope.CATALOGUE_READ): ("viewer-a", "secret-a", "all-b"),
    ("editor", Scope.CATALOGUE_READ): ("editor-a", "viewer-a", "all-b"),
    ("editor", Scope.CATALOGUE_WRITE): ("editor-all", "editor-a", "all-b"),
}


def _method(full: str):
    service, name = full.strip("/").split("/")
    for desc in permissions.SERVICES:
        if desc.full_name == service:
            return desc.methods_by_name[name]
    raise AssertionError(full)


def _status(channel, full: str, request, who: str | None) -> grpc.StatusCode:
    method = _method(full)
    response_cls = symbol_database.Default().GetSymbol(method.output_type.full_name)
    try:
        call(
            channel,
            full,
            request,
            response_cls,
            streaming=method.server_streaming,
            who=who,
        )
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined]
    return OK


def test_every_rpc_has_a_rule():
    assert permissions.missing() == []


def test_every_rpc_has_a_case():
    assert sorted(CASES) == sorted(permissions.method_names())


@pytest.mark.parametrize("full", sorted(RULES))
def test_matrix(server, channel, full):
    rule = RULES[full]
    request, enough_status = CASES[full]
    enough, weak, elsewhere = _ROLES[(rule.role, rule.scope)]
    # The catalogue is global: a viewer of any namespace may read it (an editor pull into it).
    elsewhere_status = enough_status if rule.scope is Scope.CATALOGUE_READ else DENIED
    got = {
        "no token": _status(channel, full, request, None),
        "bad token": _status(channel, full, request, "nobody"),
        "wrong namespace": _status(channel, full, request, elsewhere),
        "role too weak": _status(channel, full, request, weak),
        "role enough": _status(channel, full, request, enough),
    }
    assert got == {
        "no token": UNAUTHENTICATED,
        "bad token": UNAUTHENTICATED,
        "wrong namespace": elsewhere_status,
        "role too weak": DENIED,
        "role enough": enough_status,
    }


def test_unauthenticated_reasons(server, channel):
    stub_call = channel.unary_unary(
        _PB + "ListBundles",
        request_serializer=pb.ListBundlesRequest.SerializeToString,
        response_deserializer=pb.ListBundlesResponse.FromString,
    )
    missing = failure(stub_call, pb.ListBundlesRequest())
    assert (missing.code, missing.reason) == (UNAUTHENTICATED, "TOKEN_MISSING")
    unknown = failure(
        stub_call, pb.ListBundlesRequest(), metadata=(("authorization", "Bearer tok-nobody"),)
    )
    assert (unknown.code, unknown.reason) == (UNAUTHENTICATED, "TOKEN_UNKNOWN")
    assert "tok-nobody" not in unknown.message
    denied = failure(
        channel.unary_unary(
            _PB + "GetInstallation",
            request_serializer=pb.GetInstallationRequest.SerializeToString,
            response_deserializer=pb.GetInstallationResponse.FromString,
        ),
        pb.GetInstallationRequest(namespace=NS, name="web"),
        metadata=(("authorization", "Bearer tok-secret-a"),),
    )
    assert (denied.code, denied.reason) == (DENIED, "ROLE_REQUIRED")
    assert denied.metadata["role"] == "viewer" and denied.metadata["namespace"] == NS
