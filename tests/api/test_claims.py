"""CNAB claims and claim results through real stubs: runs recorded via the service layer,
documents checked against the CNAB spec's own schemas."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter_bundle.service.runs import NewRun, OutputValue
from tests.helpers import FIXTURES, cnab_validator, failure, wait_until

REF = "localhost:5000/claimed:v1.0.0"
BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "claimed",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/claimed:v1"}],
    "definitions": {
        "str": {"type": "string"},
        "secret": {"type": "string", "writeOnly": True},
    },
    "parameters": {
        "color": {"definition": "str", "destination": {"env": "COLOR"}},
        "password": {"definition": "secret", "destination": {"env": "PASSWORD"}},
    },
    "outputs": {"conn": {"definition": "str", "path": "/cnab/app/outputs/conn"}},
    "actions": {
        "status": {"stateless": True, "modifies": False},
        "migrate": {"modifies": True},
    },
}
INSTALLATIONS = [("dev", "web"), ("dev", "db"), ("prod", "web")]

CLAIM = cnab_validator("claim.schema.json")
RESULT = cnab_validator("claim-result.schema.json")


@pytest.fixture
def digest(stub) -> str:
    bundle = stub.CreateBundle(
        pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(BUNDLE))
    ).bundle
    for namespace, name in INSTALLATIONS:
        inst = Installation(
            namespace=namespace,
            name=name,
            bundle=BundleReference(repository=REF.split(":v")[0], tag="v1.0.0"),
        )
        stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    return bundle.digest


def record(server, digest, namespace, name, action, state=RUN_STATE_SUCCEEDED, custom=""):
    runs = server.services.runs
    run, _ = runs.create(
        namespace,
        name,
        NewRun(
            action=action,
            custom_action=custom,
            bundle_reference=REF,
            bundle_digest=digest,
            bundle_version="1.0.0",
            parameters={"color": "red", "password": "hunter2-secret"},
            sensitive_parameters=frozenset({"password"}),
        ),
    )
    runs.start(run.id)
    outputs = [OutputValue("conn", "db://x", "string")] if state == RUN_STATE_SUCCEEDED else []
    return runs.finish(run.id, state, "done" if state == RUN_STATE_SUCCEEDED else "boom", outputs)


def list_ids(stub, **kw) -> list[str]:
    resp = stub.ListClaims(pb.ListClaimsRequest(**kw))
    assert resp.total_size == len(resp.claims)
    return [c.id for c in resp.claims]


def test_the_spec_examples_validate_against_its_schemas():
    """The validators are the spec's: its own examples pass, a claim without a bundle fails."""
    examples = FIXTURES / "cnab-spec" / "examples"
    claim = json.loads((examples / "400.01-claim.json").read_text())
    CLAIM.validate(claim)
    RESULT.validate(json.loads((examples / "400.01-claim-result.json").read_text()))
    assert not CLAIM.is_valid({k: v for k, v in claim.items() if k != "bundle"})
    assert not RESULT.is_valid({"claimId": "x", "id": "y", "created": "z", "status": "done"})


def test_claim_and_its_results_are_the_specs_documents(server, stub, digest):
    run = record(server, digest, "dev", "web", ACTION_INSTALL)
    claim = stub.GetClaim(pb.GetClaimRequest(claim_id=run.id)).claim
    doc = json.loads(claim.claim_json)
    CLAIM.validate(doc)
    assert doc["id"] == run.id == claim.id and doc["revision"] == run.id == claim.revision
    assert doc["action"] == "install" == claim.action and doc["installation"] == "web"
    assert doc["bundle"] == BUNDLE and doc["bundleReference"] == REF
    assert doc["parameters"] == {"color": "red"}
    assert doc["custom"]["sh.porter-bundle"]["sensitiveParameters"] == ["password"]
    assert "hunter2-secret" not in claim.claim_json
    assert (claim.namespace, claim.installation, claim.result) == ("dev", "web", run.state)
    assert claim.create_time == run.create_time

    results = stub.ListClaimResults(pb.ListClaimResultsRequest(claim_id=run.id)).results
    statuses = [json.loads(r.result_json)["status"] for r in results]
    assert statuses == ["pending", "running", "succeeded"]
    for r in results:
        RESULT.validate(json.loads(r.result_json))
        assert r.claim_id == run.id
    final = json.loads(results[-1].result_json)
    assert final["message"] == "done" and results[-1].status == RUN_STATE_SUCCEEDED
    out = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace="dev", name="web", run_id=run.id)
    ).outputs
    assert final["outputs"] == {"conn": {"contentDigest": out[0].digest}}
    assert "outputs" not in json.loads(results[0].result_json)
    assert [r.id for r in results] == sorted(r.id for r in results)

    one = stub.GetClaimResult(
        pb.GetClaimResultRequest(
            namespace="dev", name="web", claim_id=run.id, result_id=results[1].id
        )
    ).result
    assert one == results[1]


def test_revision_changes_with_modifying_actions_only(server, stub, digest):
    install = record(server, digest, "dev", "web", ACTION_INSTALL)
    status = record(server, digest, "dev", "web", ACTION_INVOKE, custom="status")
    migrate = record(server, digest, "dev", "web", ACTION_INVOKE, custom="migrate")
    after = record(server, digest, "dev", "web", ACTION_INVOKE, custom="status")
    upgrade = record(server, digest, "dev", "web", ACTION_UPGRADE, RUN_STATE_FAILED)

    def revision(run):
        return stub.GetClaim(pb.GetClaimRequest(claim_id=run.id)).claim.revision

    assert revision(install) == install.id
    assert revision(status) == install.id
    assert revision(migrate) == migrate.id
    assert revision(after) == migrate.id
    assert revision(upgrade) == upgrade.id
    failed = stub.ListClaimResults(pb.ListClaimResultsRequest(claim_id=upgrade.id)).results
    assert json.loads(failed[-1].result_json)["status"] == "failed"
    assert failed[-1].message == "boom"


def test_claims_across_installations_with_every_filter(server, stub, digest):
    a = record(server, digest, "dev", "web", ACTION_INSTALL)
    b = record(server, digest, "dev", "db", ACTION_INSTALL, RUN_STATE_FAILED)
    c = record(server, digest, "prod", "web", ACTION_INSTALL)
    # The next claims are created in a later millisecond than the first three (IDs hold it).
    wait_until(lambda: time.time_ns() // 1_000_000 > _ms(c.create_time) + 1, "the clock to move")
    split = Timestamp()
    split.GetCurrentTime()
    wait_until(lambda: time.time_ns() // 1_000_000 > split.ToMilliseconds(), "the clock to move")
    d = record(server, digest, "dev", "web", ACTION_INVOKE, custom="status")
    e = record(server, digest, "prod", "web", ACTION_UPGRADE, RUN_STATE_FAILED)

    assert list_ids(stub, all_namespaces=True) == [e.id, d.id, c.id, b.id, a.id]
    assert list_ids(stub, namespace="dev") == [d.id, b.id, a.id]
    assert list_ids(stub, namespace="prod") == [e.id, c.id]
    assert list_ids(stub, namespace="") == []
    assert list_ids(stub, all_namespaces=True, installation="web") == [e.id, d.id, c.id, a.id]
    assert list_ids(stub, namespace="dev", installation="web") == [d.id, a.id]
    assert list_ids(stub, all_namespaces=True, action="install") == [c.id, b.id, a.id]
    assert list_ids(stub, all_namespaces=True, action="status") == [d.id]
    assert list_ids(stub, all_namespaces=True, result=RUN_STATE_FAILED) == [e.id, b.id]
    assert list_ids(stub, all_namespaces=True, created_after=split) == [e.id, d.id]
    assert list_ids(stub, all_namespaces=True, created_before=split) == [c.id, b.id, a.id]
    assert list_ids(
        stub, namespace="prod", action="upgrade", result=RUN_STATE_FAILED, created_after=split
    ) == [e.id]

    for claim in stub.ListClaims(pb.ListClaimsRequest(all_namespaces=True)).claims:
        CLAIM.validate(json.loads(claim.claim_json))


def test_claims_page_newest_first_with_tokens(server, stub, digest):
    ids = [record(server, digest, "dev", "db", ACTION_INSTALL).id for _ in range(5)]
    seen, token, totals = [], "", set()
    while True:
        resp = stub.ListClaims(pb.ListClaimsRequest(namespace="dev", page_size=2, page_token=token))
        seen += [c.id for c in resp.claims]
        totals.add(resp.total_size)
        token = resp.next_page_token
        if not token:
            break
        # A claim recorded between pages comes first, so the next page neither skips nor repeats.
        record(server, digest, "dev", "web", ACTION_INSTALL)
    assert seen == ids[::-1] and totals == {5}
    skipped = stub.ListClaims(pb.ListClaimsRequest(namespace="dev", installation="db", skip=3))
    assert [c.id for c in skipped.claims] == ids[1::-1]

    first = stub.ListClaims(pb.ListClaimsRequest(namespace="dev", page_size=1))
    err = failure(
        stub.ListClaims,
        pb.ListClaimsRequest(namespace="prod", page_size=1, page_token=first.next_page_token),
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.violations


def test_claim_errors(server, stub, digest):
    run = record(server, digest, "dev", "web", ACTION_INSTALL)
    err = failure(stub.GetClaim, pb.GetClaimRequest(namespace="dev", name="db", claim_id=run.id))
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "RUN_NOT_FOUND"
    err = failure(stub.GetClaim, pb.GetClaimRequest(claim_id="not-a-ulid"))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    err = failure(stub.GetClaimResult, pb.GetClaimResultRequest(claim_id=run.id, result_id=run.id))
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "CLAIM_RESULT_NOT_FOUND"
    bad = Timestamp(seconds=100)
    err = failure(
        stub.ListClaims,
        pb.ListClaimsRequest(all_namespaces=True, created_after=bad, created_before=bad),
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "created_before" in err.violations
    err = failure(stub.ListClaims, pb.ListClaimsRequest(all_namespaces=True, result=99))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "result" in err.violations
    # Not a timestamp at all (the fuzzer's find): nanos out of range, a year past 9999.
    for invalid in (Timestamp(seconds=1, nanos=2**31 - 1), Timestamp(seconds=2**40)):
        err = failure(stub.ListClaims, pb.ListClaimsRequest(created_after=invalid))
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "created_after" in err.violations


def _ms(ts: Timestamp) -> int:
    return ts.ToMilliseconds()
