"""Lists show only what the caller may see; runs found by ID alone are not disclosed."""

from __future__ import annotations

import grpc
import pytest

from installation.v1alpha1 import installation_pb2 as ipb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter.v1alpha1 import porter_pb2_grpc
from tests.auth.conftest import NS, OTHER, creds, finished_run, installation
from tests.helpers import failure


@pytest.fixture
def world(server, stub):
    """Installations and credential sets in team-a (2), team-b (2) and the global namespace."""
    admin = creds("admin")
    for namespace in (NS, NS, OTHER, OTHER, ""):
        n = stub.ListInstallations(
            pb.ListInstallationsRequest(namespace=namespace), metadata=admin
        ).total_size
        stub.CreateInstallation(
            pb.CreateInstallationRequest(installation=installation(namespace, f"web-{n}")),
            metadata=admin,
        )
        stub.CreateCredentialSet(
            pb.CreateCredentialSetRequest(
                credential_set=CredentialSet(
                    namespace=namespace,
                    name=f"creds-{n}",
                    credentials=[NamedValueSource(name="x", source=ValueSource(env="HOME"))],
                )
            ),
            metadata=admin,
        )


def _names(page, field):
    return [(i.namespace, i.name) for i in getattr(page, field)]


def test_list_all_namespaces_shows_only_visible(server, stub, world):
    page = stub.ListInstallations(
        pb.ListInstallationsRequest(all_namespaces=True), metadata=creds("viewer-a")
    )
    assert _names(page, "installations") == [(NS, "web-0"), (NS, "web-1")]
    assert page.total_size == 2
    every = stub.ListInstallations(
        pb.ListInstallationsRequest(all_namespaces=True), metadata=creds("admin")
    )
    assert every.total_size == 5
    sets = stub.ListCredentialSets(
        pb.ListCredentialSetsRequest(all_namespaces=True), metadata=creds("all-b")
    )
    assert _names(sets, "credential_sets") == [(OTHER, "creds-0"), (OTHER, "creds-1")]
    assert sets.total_size == 2
    nothing = stub.ListInstallations(
        pb.ListInstallationsRequest(all_namespaces=True), metadata=creds("secret-a")
    )
    assert list(nothing.installations) == [] and nothing.total_size == 0


def test_paging_through_visible_only(server, stub, world):
    first = stub.ListInstallations(
        pb.ListInstallationsRequest(all_namespaces=True, page_size=1), metadata=creds("viewer-a")
    )
    assert _names(first, "installations") == [(NS, "web-0")] and first.total_size == 2
    second = stub.ListInstallations(
        pb.ListInstallationsRequest(
            all_namespaces=True, page_size=1, page_token=first.next_page_token
        ),
        metadata=creds("viewer-a"),
    )
    assert _names(second, "installations") == [(NS, "web-1")] and not second.next_page_token
    # The token is bound to what its caller could see.
    reused = failure(
        stub.ListInstallations,
        pb.ListInstallationsRequest(
            all_namespaces=True, page_size=1, page_token=first.next_page_token
        ),
        metadata=creds("admin"),
    )
    assert reused.code == grpc.StatusCode.INVALID_ARGUMENT


def test_list_of_a_namespace_not_visible_is_denied(server, stub, world):
    denied = failure(
        stub.ListInstallations,
        pb.ListInstallationsRequest(namespace=OTHER),
        metadata=creds("viewer-a"),
    )
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED


def test_legacy_list_filtered(server, channel, world):
    legacy = porter_pb2_grpc.PorterStub(channel)
    found = legacy.ListInstallations(
        ipb.ListInstallationsRequest(allNamespaces=True), metadata=creds("viewer-a")
    )
    assert sorted((i.namespace, i.name) for i in found.installation) == [
        (NS, "web-0"),
        (NS, "web-1"),
    ]
    star = legacy.ListInstallations(
        ipb.ListInstallationsRequest(namespace="*"), metadata=creds("all-b")
    )
    assert sorted(i.namespace for i in star.installation) == [OTHER, OTHER]


def test_run_by_id_in_hidden_namespace_is_not_found(server, stub, world):
    run = finished_run(server.services, OTHER, "web-0")  # final: streams end at once
    hidden = failure(
        lambda: list(
            stub.WatchInstallationRuns(
                pb.WatchInstallationRunsRequest(run_id=run.id), metadata=creds("viewer-a")
            )
        )
    )
    missing = failure(
        lambda: list(
            stub.WatchInstallationRuns(
                pb.WatchInstallationRunsRequest(run_id="01HZZZZZZZZZZZZZZZZZZZZZZZ"),
                metadata=creds("viewer-a"),
            )
        )
    )
    assert hidden.code == missing.code == grpc.StatusCode.NOT_FOUND
    assert hidden.reason == missing.reason == "RUN_NOT_FOUND"
    seen = list(stub.StreamRunLogs(pb.StreamRunLogsRequest(run_id=run.id), metadata=creds("all-b")))
    assert seen[-1].run.id == run.id


def test_claims_show_only_visible_namespaces(server, stub, world):
    hidden = finished_run(server.services, OTHER, "web-0")
    shown = finished_run(server.services, NS, "web-0")
    listed = stub.ListClaims(pb.ListClaimsRequest(all_namespaces=True), metadata=creds("viewer-a"))
    assert [c.id for c in listed.claims] == [shown.id] and listed.total_size == 1
    every = stub.ListClaims(pb.ListClaimsRequest(all_namespaces=True), metadata=creds("admin"))
    assert [c.id for c in every.claims] == [shown.id, hidden.id]  # newest first
    # By ID alone, a claim of a namespace the caller may not see is not disclosed.
    for call, request in (
        (stub.GetClaim, pb.GetClaimRequest(claim_id=hidden.id)),
        (stub.ListClaimResults, pb.ListClaimResultsRequest(claim_id=hidden.id)),
    ):
        err = failure(call, request, metadata=creds("viewer-a"))
        assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")
    got = stub.GetClaim(pb.GetClaimRequest(claim_id=shown.id), metadata=creds("viewer-a")).claim
    assert got.namespace == NS


def test_refreshing_the_status_needs_the_operator_role(server, stub, world):
    request = pb.GetInstallationStatusRequest(namespace=NS, name="web-0", refresh=True)
    denied = failure(stub.GetInstallationStatus, request, metadata=creds("viewer-a"))
    assert (denied.code, denied.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    assert denied.metadata["role"] == "operator"
    # An operator gets past the check: this bundle has no status action.
    allowed = failure(stub.GetInstallationStatus, request, metadata=creds("operator-a"))
    assert allowed.reason == "STATUS_ACTION_UNDEFINED"
    plain = stub.GetInstallationStatus(
        pb.GetInstallationStatusRequest(namespace=NS, name="web-0"), metadata=creds("viewer-a")
    ).status
    assert plain.status == "Unknown"
