"""GetInstallationStatus (CNAB 804) through real stubs, runs recorded via the service layer:
the status action's output when the bundle defines it, else the last claim result."""

from __future__ import annotations

import json

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.claim_pb2 import (
    CNAB_STATUS_SOURCE_CLAIM_RESULT,
    CNAB_STATUS_SOURCE_NONE,
    CNAB_STATUS_SOURCE_STATUS_ACTION,
)
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter_bundle.service.runs import NewRun, OutputValue
from tests.helpers import FIXTURES, cnab_validator, failure

NS = "dev"
EXAMPLES = FIXTURES / "cnab-spec" / "examples"
STATUS = cnab_validator("status.schema.json")


def bundle(name: str, *, status_action: bool) -> dict:
    doc: dict = {
        "schemaVersion": "v1.0.0",
        "name": name,
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": f"localhost/{name}:v1"}],
        "definitions": {"status": {"type": "object"}},
        "outputs": {
            "status": {
                "definition": "status",
                "path": "/cnab/app/outputs/status",
                "applyTo": ["io.cnab.status"],
            }
        },
        "actions": {},
    }
    if status_action:
        doc["actions"]["io.cnab.status"] = {"stateless": False, "modifies": False}
    return doc


def setup(stub, name: str, *, status_action: bool) -> None:
    ref = f"localhost:5000/{name}:v1"
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference=ref, bundle_json=json.dumps(bundle(name, status_action=status_action))
        )
    )
    inst = Installation(
        namespace=NS, name=name, bundle=BundleReference(repository=ref[:-3], tag="v1")
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))


def record(server, name, action, state, custom="", outputs=(), finish=True):
    runs = server.services.runs
    run, _ = runs.create(NS, name, NewRun(action=action, custom_action=custom))
    runs.start(run.id)
    if not finish:
        return run
    return runs.finish(run.id, state, "" if state == RUN_STATE_SUCCEEDED else "it broke", outputs)


def status_of(stub, name, **kw):
    return stub.GetInstallationStatus(
        pb.GetInstallationStatusRequest(namespace=NS, name=name, **kw)
    ).status


def test_status_from_the_last_claim_result(server, stub):
    setup(stub, "plain", status_action=False)
    got = status_of(stub, "plain")
    assert (got.status, got.source, got.claim_id) == ("Unknown", CNAB_STATUS_SOURCE_NONE, "")
    assert not got.status_action_defined

    install = record(server, "plain", ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    got = status_of(stub, "plain")
    assert (got.status, got.source, got.claim_id) == (
        "Ready",
        CNAB_STATUS_SOURCE_CLAIM_RESULT,
        install.id,
    )
    assert got.time == install.complete_time
    STATUS.validate(json.loads(got.status_json))

    upgrade = record(server, "plain", ACTION_UPGRADE, RUN_STATE_FAILED)
    got = status_of(stub, "plain")
    assert (got.status, got.message, got.claim_id) == ("Failed", "it broke", upgrade.id)
    assert json.loads(got.status_json) == {"status": "Failed", "message": "it broke"}

    running = record(server, "plain", ACTION_UPGRADE, 0, finish=False)
    got = status_of(stub, "plain")
    assert (got.status, got.claim_id) == ("Pending", running.id)
    server.services.runs.finish(running.id, RUN_STATE_SUCCEEDED, "")

    record(server, "plain", ACTION_UNINSTALL, RUN_STATE_SUCCEEDED)
    assert status_of(stub, "plain").status == "Uninstalled"

    err = failure(
        stub.GetInstallationStatus,
        pb.GetInstallationStatusRequest(namespace=NS, name="plain", refresh=True),
    )
    assert (err.code, err.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "STATUS_ACTION_UNDEFINED",
    )
    err = failure(
        stub.GetInstallationStatus, pb.GetInstallationStatusRequest(namespace=NS, name="nope")
    )
    assert err.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("example", ["804.01", "804.02", "804.03"])
def test_status_from_the_status_action_output(server, stub, example):
    document = json.loads((EXAMPLES / f"{example}-status.json").read_text())
    STATUS.validate(document)
    setup(stub, "app", status_action=True)
    install = record(server, "app", ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    # Before the status action succeeded once, the status is the last claim result's.
    got = status_of(stub, "app")
    assert (got.source, got.claim_id, got.status_action_defined) == (
        CNAB_STATUS_SOURCE_CLAIM_RESULT,
        install.id,
        True,
    )
    record(server, "app", ACTION_INVOKE, RUN_STATE_FAILED, custom="io.cnab.status")
    assert status_of(stub, "app").claim_id == install.id  # a status run is no claim result source

    out = [OutputValue("status", document, "object")]
    run = record(server, "app", ACTION_INVOKE, RUN_STATE_SUCCEEDED, "io.cnab.status", out)
    got = status_of(stub, "app")
    assert got.source == CNAB_STATUS_SOURCE_STATUS_ACTION and got.claim_id == run.id
    assert json.loads(got.status_json) == document
    assert got.status == document["status"] and got.message == document.get("message", "")


def test_a_status_output_that_is_no_status_document(server, stub):
    setup(stub, "bad", status_action=True)
    out = [OutputValue("status", {"status": 3}, "object")]
    run = record(server, "bad", ACTION_INVOKE, RUN_STATE_SUCCEEDED, "io.cnab.status", out)
    err = failure(
        stub.GetInstallationStatus, pb.GetInstallationStatusRequest(namespace=NS, name="bad")
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STATUS_OUTPUT_INVALID")
    assert err.metadata["run_id"] == run.id and "status.status" in err.message
