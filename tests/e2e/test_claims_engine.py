"""CNAB claims and status end to end: the claim a busybox invocation image reads from
/cnab/claim.json, the claim and results served afterwards, and the status document its
io.cnab.status action writes, all valid against the CNAB spec's schemas."""

from __future__ import annotations

import json

import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.claim_pb2 import CNAB_STATUS_SOURCE_STATUS_ACTION
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter_bundle.service import Services
from tests.helpers import FIXTURES, cnab_validator, ended_run, engine_services

pytestmark = pytest.mark.slow  # real containers: seconds each
NS, NAME, REF = "dev", "claimer", "localhost:5000/claimer:v1"

RUN_SCRIPT = r"""#!/bin/sh
mkdir -p /cnab/app/outputs
cp /cnab/claim.json /cnab/app/outputs/claim
echo "revision $CNAB_REVISION"
"""


def bundle(image: str) -> dict:
    return {
        "schemaVersion": "v1.0.0",
        "name": "claimer",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {
            "str": {"type": "string", "default": "blue"},
            "secret": {"type": "string", "writeOnly": True},
        },
        "parameters": {
            "color": {"definition": "str", "destination": {"env": "COLOR"}},
            "password": {"definition": "secret", "destination": {"env": "PASSWORD"}},
        },
        "outputs": {"claim": {"definition": "secret", "path": "/cnab/app/outputs/claim"}},
        "actions": {"status": {"stateless": True, "modifies": False}},
    }


@pytest.fixture
def services(store, podman_host) -> Services:
    return engine_services(store, podman_host)


def run_action(stub, action: str) -> str:
    run = stub.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=NAME, action=action)).run
    done = ended_run(stub, NS, NAME, run.id, timeout=60)
    assert done.state == RUN_STATE_SUCCEEDED, done.message
    return done.id


def test_container_claim_and_served_claims_follow_the_spec(stub, test_image):
    image = test_image("claimer", RUN_SCRIPT)
    stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(bundle(image))))
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository=REF[:-3], tag="v1")
    )
    inst.parameters.update({"password": "pw-in-claim-7"})
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    claims, results = (
        cnab_validator("claim.schema.json"),
        cnab_validator("claim-result.schema.json"),
    )

    install, status = run_action(stub, "install"), run_action(stub, "status")
    for run_id, revision in ((install, install), (status, install)):
        outputs = stub.ListInstallationRunOutputs(
            pb.ListInstallationRunOutputsRequest(
                namespace=NS, name=NAME, run_id=run_id, reveal_sensitive=True
            )
        ).outputs
        in_container = json.loads(outputs[0].value.string_value)
        claims.validate(in_container)
        assert in_container["id"] == run_id and in_container["revision"] == revision
        assert in_container["parameters"] == {"color": "blue", "password": "pw-in-claim-7"}

        served = stub.GetClaim(pb.GetClaimRequest(namespace=NS, name=NAME, claim_id=run_id)).claim
        doc = json.loads(served.claim_json)
        claims.validate(doc)
        assert doc["parameters"] == {"color": "blue"} and "pw-in-claim-7" not in served.claim_json
        assert doc["bundle"] == in_container["bundle"] and doc["revision"] == revision
        history = stub.ListClaimResults(pb.ListClaimResultsRequest(claim_id=run_id)).results
        for r in history:
            results.validate(json.loads(r.result_json))
        assert [json.loads(r.result_json)["status"] for r in history] == [
            "pending",
            "running",
            "succeeded",
        ]
        final = json.loads(history[-1].result_json)
        assert final["outputs"]["claim"]["contentDigest"] == outputs[0].digest

    listed = stub.ListClaims(pb.ListClaimsRequest(namespace=NS, installation=NAME)).claims
    assert [c.id for c in listed] == [status, install]
    assert [c.action for c in listed] == ["status", "install"]


STATUS_SCRIPT = r"""#!/bin/sh
mkdir -p /cnab/app/outputs
case "$CNAB_ACTION" in
  io.cnab.status) cp "/cnab/app/examples/$EXAMPLE-status.json" /cnab/app/outputs/status ;;
  *) echo "$CNAB_ACTION" ;;
esac
"""


def test_refresh_runs_the_status_action_and_reports_its_document(stub, test_image):
    examples = FIXTURES / "cnab-spec" / "examples"
    names = ("804.01", "804.02", "804.03")
    image = test_image(
        "status-app",
        STATUS_SCRIPT,
        {
            f"/cnab/app/examples/{n}-status.json": (examples / f"{n}-status.json").read_text()
            for n in names
        },
    )
    doc = {
        "schemaVersion": "v1.0.0",
        "name": "status-app",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {"str": {"type": "string"}, "status": {"type": "object"}},
        "parameters": {"example": {"definition": "str", "destination": {"env": "EXAMPLE"}}},
        "outputs": {
            "status": {
                "definition": "status",
                "path": "/cnab/app/outputs/status",
                "applyTo": ["io.cnab.status"],
            }
        },
        "actions": {"io.cnab.status": {"stateless": False, "modifies": False}},
    }
    ref = "localhost:5000/status-app:v1"
    stub.CreateBundle(pb.CreateBundleRequest(reference=ref, bundle_json=json.dumps(doc)))
    validator = cnab_validator("status.schema.json")
    for n in names:
        name = "status-" + n.replace(".", "-")
        inst = Installation(
            namespace=NS, name=name, bundle=BundleReference(repository=ref[:-3], tag="v1")
        )
        inst.parameters.update({"example": n})
        stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
        run = stub.ExecuteAction(
            pb.ExecuteActionRequest(namespace=NS, name=name, action="install")
        ).run
        assert ended_run(stub, NS, name, run.id, timeout=60).state == RUN_STATE_SUCCEEDED

        got = stub.GetInstallationStatus(
            pb.GetInstallationStatusRequest(namespace=NS, name=name, refresh=True), timeout=90
        ).status
        expected = json.loads((examples / f"{n}-status.json").read_text())
        assert got.source == CNAB_STATUS_SOURCE_STATUS_ACTION and got.claim_id != run.id
        assert json.loads(got.status_json) == expected and got.status == expected["status"]
        validator.validate(json.loads(got.status_json))
        # Without refresh the same document comes from the recorded run, no container started.
        again = stub.GetInstallationStatus(
            pb.GetInstallationStatusRequest(namespace=NS, name=name)
        ).status
        assert (again.claim_id, again.status_json) == (got.claim_id, got.status_json)


def test_runs_after_update_bundle_get_the_new_document(stub, test_image):
    image = test_image("claimer", RUN_SCRIPT)
    first = bundle(image)
    created = stub.CreateBundle(
        pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(first))
    )
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository=REF[:-3], tag="v1")
    )
    inst.parameters.update({"password": "pw"})
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    install = run_action(stub, "install")
    second = {**first, "version": "1.0.1", "description": "updated"}
    stub.UpdateBundle(
        pb.UpdateBundleRequest(
            reference=REF, bundle_json=json.dumps(second), etag=created.bundle.etag
        )
    )
    upgrade = run_action(stub, "upgrade")

    def container_claim(run_id: str) -> dict:
        outputs = stub.ListInstallationRunOutputs(
            pb.ListInstallationRunOutputsRequest(
                namespace=NS, name=NAME, run_id=run_id, reveal_sensitive=True
            )
        ).outputs
        return json.loads(outputs[0].value.string_value)

    assert container_claim(upgrade)["bundle"] == second
    assert container_claim(install)["bundle"] == first
    served = stub.GetClaim(pb.GetClaimRequest(claim_id=install)).claim
    assert json.loads(served.claim_json)["bundle"] == first
