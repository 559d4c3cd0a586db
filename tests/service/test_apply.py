"""ApplyInstallation's desired-state reconciliation, through the real server and a fake engine.

Every decision path of Porter's `porter installations apply` (pkg/porter/reconcile.go):
install, upgrade for each kind of drift, uninstall, nothing, dry run and force.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
import yaml

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
)
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
)
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter_bundle.executor import ContainerResult
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from tests.fake_executor import FakeExecutor
from tests.helpers import failure, wait_until

NS, NAME = "dev", "app"
NONE, INSTALL, UPGRADE, UNINSTALL = (
    pb.APPLY_DECISION_NONE,
    pb.APPLY_DECISION_INSTALL,
    pb.APPLY_DECISION_UPGRADE,
    pb.APPLY_DECISION_UNINSTALL,
)
CREATED, UPDATED, UNCHANGED = (
    pb.APPLY_OUTCOME_CREATED,
    pb.APPLY_OUTCOME_UPDATED,
    pb.APPLY_OUTCOME_UNCHANGED,
)


def bundle(version: str) -> dict[str, Any]:
    return {
        "schemaVersion": "v1.0.0",
        "name": "app",
        "version": version,
        "invocationImages": [{"imageType": "docker", "image": "localhost/app-installer:v1"}],
        "definitions": {
            "level": {"type": "integer", "default": 5},
            "str": {"type": "string"},
            "password": {"type": "string", "writeOnly": True},
        },
        "parameters": {
            "level": {"definition": "level", "destination": {"env": "LEVEL"}},
            "color": {"definition": "str", "destination": {"env": "COLOR"}},
            "password": {"definition": "password", "destination": {"env": "PASSWORD"}},
            "note": {
                "definition": "str",
                "destination": {"env": "NOTE"},
                "applyTo": ["install"],
            },
        },
        "credentials": {"token": {"env": "TOKEN", "required": True}},
    }


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def services(store, fake) -> Services:
    return Services.create(
        store,
        executor=lambda: fake,
        action_settings=ActionSettings(
            run_timeout_seconds=30,
            max_concurrent_runs=1,
            cancel_grace_seconds=10,
            network=None,
            engine_retry_seconds=60,
        ),
    )


def src(**kind: Any) -> ValueSource:
    source = ValueSource()
    if "value" in kind:
        source.value.string_value = kind["value"]
        return source
    return ValueSource(**kind)


@pytest.fixture
def world(stub):
    for version in ("1.0.0", "1.1.0"):
        stub.CreateBundle(
            pb.CreateBundleRequest(
                reference=f"localhost:5000/app:v{version}", bundle_json=json.dumps(bundle(version))
            )
        )
    for name, token in (("creds", "tok-1"), ("creds2", "tok-2")):
        stub.CreateCredentialSet(
            pb.CreateCredentialSetRequest(
                credential_set=CredentialSet(
                    namespace=NS,
                    name=name,
                    credentials=[NamedValueSource(name="token", source=src(value=token))],
                )
            )
        )
    for name, color in (("params", "red"), ("params2", "blue")):
        stub.CreateParameterSet(
            pb.CreateParameterSetRequest(
                parameter_set=ParameterSet(
                    namespace=NS,
                    name=name,
                    parameters=[NamedValueSource(name="color", source=src(value=color))],
                )
            )
        )


def document(**changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "schemaType": "Installation",
        "schemaVersion": "1.0.2",
        "namespace": NS,
        "name": NAME,
        "bundle": {"repository": "localhost:5000/app", "version": "1.0.0"},
        "parameters": {"level": 7, "password": "pw-first", "note": "hello"},
        "credentialSets": ["creds"],
        "parameterSets": ["params"],
    }
    doc.update(changes)
    return yaml.safe_dump({k: v for k, v in doc.items() if v is not None}).encode()


def apply(stub, doc: bytes, **kw: Any) -> pb.ApplyInstallationResponse:
    resp: pb.ApplyInstallationResponse = stub.ApplyInstallation(
        pb.ApplyInstallationRequest(document=doc, **kw)
    )
    return resp


def runs(stub) -> list[Any]:
    return list(
        stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace=NS, name=NAME)).runs
    )


def settle(stub, timeout: float = 20.0) -> Any:
    """Waits for the installation's runs to finish; returns the installation."""
    wait_until(
        lambda: all(r.state not in (RUN_STATE_PENDING, RUN_STATE_RUNNING) for r in runs(stub)),
        "the runs to end",
        timeout=timeout,
    )
    return stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name=NAME)).installation


def changes(resp: pb.ApplyInstallationResponse) -> dict[str, tuple[Any, Any]]:
    def plain(present: bool, value: Any) -> Any:
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(value) if present else None

    return {
        c.field: ("sensitive",)
        if c.sensitive
        else (plain(c.HasField("current"), c.current), plain(c.HasField("desired"), c.desired))
        for c in resp.changes
    }


def test_every_decision_path(stub, world, fake):
    # Never installed: install.
    first = apply(stub, document())
    assert (first.outcome, first.decision) == (CREATED, INSTALL)
    assert changes(first) == {"status": ("defined", "installed")}
    assert first.run.action == ACTION_INSTALL and first.run.state == RUN_STATE_PENDING
    inst = settle(stub)
    assert inst.status.state == INSTALLATION_STATE_INSTALLED
    assert fake.specs[-1].env["LEVEL"] == "7" and fake.specs[-1].env["COLOR"] == "red"

    # In sync: nothing runs, nothing is written.
    same = apply(stub, document())
    assert (same.outcome, same.decision) == (UNCHANGED, NONE)
    assert same.reason.startswith("in sync") and not same.HasField("run")
    assert same.installation.etag == inst.etag and len(fake.specs) == 1

    # Each kind of drift: an upgrade, and the diff that drove it.
    drifts = [
        (
            {"parameters": {"level": 8, "password": "pw-first", "note": "hello"}},
            {"parameters.level": (7, 8)},
        ),
        (
            {"bundle": {"repository": "localhost:5000/app", "version": "1.1.0"}},
            {"bundle": None},
        ),
        (
            {"credentialSets": ["creds", "creds2"]},
            {"credentialSets": (["creds"], ["creds", "creds2"])},
        ),
        (
            {"parameterSets": ["params", "params2"]},
            {
                "parameters.color": ("red", "blue"),
                "parameterSets": (["params"], ["params", "params2"]),
            },
        ),
    ]
    applied: dict[str, Any] = {}
    for change, want in drifts:
        applied.update(change)
        resp = apply(stub, document(**applied))
        assert (resp.outcome, resp.decision) == (UPDATED, UPGRADE), resp.reason
        assert list(resp.changed_fields) == list(change)
        got = changes(resp)
        assert set(got) == set(want), got
        for field, values in want.items():
            if values is not None:
                assert got[field] == values
        assert resp.run.action == ACTION_UPGRADE
        settle(stub)
        assert apply(stub, document(**applied)).decision == NONE  # in sync again
    bundle_change = changes(apply(stub, document(**applied), dry_run=True))  # nothing left
    assert bundle_change == {}
    assert fake.specs[-1].env["CNAB_BUNDLE_VERSION"] == "1.1.0"
    assert fake.specs[-1].env["TOKEN"] == "tok-2" and fake.specs[-1].env["COLOR"] == "blue"

    # A sensitive parameter: the diff names it, never its values.
    applied["parameters"] = {"level": 8, "password": "pw-second", "note": "hello"}
    secret = apply(stub, document(**applied))
    assert secret.decision == UPGRADE and changes(secret) == {"parameters.password": ("sensitive",)}
    diff = b"".join(c.SerializeToString() for c in secret.changes) + secret.reason.encode()
    assert b"pw-" not in diff and b"pw-" not in secret.run.SerializeToString()
    settle(stub)

    # Parameters that only apply to install do not drift an upgrade.
    applied["parameters"] = {"level": 8, "password": "pw-second", "note": "changed"}
    note = apply(stub, document(**applied))
    assert (note.outcome, note.decision) == (UPDATED, NONE)

    # Force: runs even in sync.
    forced = apply(stub, document(**applied), force=True)
    assert forced.decision == UPGRADE and "force" in forced.reason and forced.run.id
    settle(stub)

    # uninstalled: true -> uninstall; then nothing (already uninstalled).
    gone = apply(stub, document(**applied, uninstalled=True))
    assert (gone.outcome, gone.decision) == (UPDATED, UNINSTALL)
    assert changes(gone) == {"status": ("installed", "uninstalled")}
    assert gone.run.action == ACTION_UNINSTALL
    assert settle(stub).status.state == INSTALLATION_STATE_UNINSTALLED
    again = apply(stub, document(**applied, uninstalled=True))
    assert (again.outcome, again.decision) == (UNCHANGED, NONE)
    assert again.reason == "the installation is already uninstalled"

    # Uninstalled installations are not reconciled again (Porter), unless forced.
    back = apply(stub, document(**applied))
    assert (back.outcome, back.decision) == (UPDATED, NONE)
    assert "does not reconcile it again" in back.reason
    reinstall = apply(stub, document(**applied), force=True)
    assert reinstall.decision == INSTALL and reinstall.run.action == ACTION_INSTALL
    assert settle(stub).status.state == INSTALLATION_STATE_INSTALLED


def test_dry_run_decides_and_changes_nothing(stub, world, fake):
    dry = apply(stub, document(), dry_run=True)
    assert (dry.outcome, dry.decision) == (CREATED, INSTALL)
    assert dry.installation.name == NAME and not dry.HasField("run")
    assert stub.ListInstallations(pb.ListInstallationsRequest(namespace=NS)).installations == []

    apply(stub, document())
    inst = settle(stub)
    changed = document(bundle={"repository": "localhost:5000/app", "version": "1.1.0"})
    dry = apply(stub, changed, dry_run=True)
    assert (dry.outcome, dry.decision) == (UPDATED, UPGRADE)
    assert list(dry.changed_fields) == ["bundle"] and [c.field for c in dry.changes] == ["bundle"]
    assert dry.installation.bundle.version == "1.1.0"
    bundle_change = changes(dry)["bundle"]
    assert bundle_change[0]["reference"] == "localhost:5000/app:v1.0.0"
    assert bundle_change[1]["reference"] == "localhost:5000/app:v1.1.0"
    assert bundle_change[0]["digest"] != bundle_change[1]["digest"]
    after = stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name=NAME)).installation
    assert after == inst and len(runs(stub)) == 1 and len(fake.specs) == 1
    assert apply(stub, document(uninstalled=True), dry_run=True).decision == UNINSTALL
    assert apply(stub, document(), dry_run=True, force=True).decision == UPGRADE
    assert len(runs(stub)) == 1


def test_uninstalled_before_ever_installed(stub, world):
    never = apply(stub, document(uninstalled=True))
    assert (never.outcome, never.decision) == (CREATED, NONE)
    assert never.reason == "uninstalled is true and the bundle was never installed"
    forced = apply(stub, document(uninstalled=True), force=True)
    assert forced.decision == UNINSTALL and forced.run.action == ACTION_UNINSTALL
    assert settle(stub).status.state == INSTALLATION_STATE_UNINSTALLED


def test_failed_runs_are_retried_by_the_next_apply(stub, world, fake):
    fake.behaviour = lambda spec: ContainerResult(exit_code=1)
    apply(stub, document())
    assert settle(stub).status.run_state == RUN_STATE_FAILED
    # The run starts in the background as soon as apply returns: set its behaviour first.
    fake.behaviour = lambda spec: ContainerResult(exit_code=0)
    retry = apply(stub, document())  # still not installed: install again
    assert (retry.outcome, retry.decision) == (UNCHANGED, INSTALL)
    assert settle(stub).status.run_state == RUN_STATE_SUCCEEDED

    fake.behaviour = lambda spec: ContainerResult(exit_code=1)
    up = document(parameters={"level": 9, "password": "pw-first", "note": "hello"})
    assert apply(stub, up).decision == UPGRADE
    assert settle(stub).status.run_state == RUN_STATE_FAILED
    # Porter compares with the last run (the failed upgrade, same values) and never retries;
    # here the comparison is with the last successful install or upgrade.
    fake.behaviour = lambda spec: ContainerResult(exit_code=0)
    again = apply(stub, up)
    assert (again.outcome, again.decision) == (UNCHANGED, UPGRADE)
    assert changes(again) == {"parameters.level": (7, 9)}
    assert settle(stub).status.run_state == RUN_STATE_SUCCEEDED
    assert apply(stub, up).decision == NONE


def test_a_refused_run_fails_the_call_and_keeps_the_document(stub, world, fake):
    fake.hold.set()
    try:
        apply(stub, document())
        assert fake.started.wait(10)
        busy = document(parameters={"level": 9, "password": "pw-first", "note": "hello"})
        err = failure(apply, stub, busy)
        assert err.code == grpc.StatusCode.ABORTED and err.reason == "RUN_IN_PROGRESS"
        stored = stub.GetInstallation(
            pb.GetInstallationRequest(namespace=NS, name=NAME)
        ).installation
        assert stored.parameters["level"] == 9  # the document change is kept, as in Porter
    finally:
        fake.hold.clear()
    settle(stub)
    retried = apply(stub, busy)  # the install ran with level 7: the stored level 9 upgrades
    assert (retried.outcome, retried.decision) == (UNCHANGED, UPGRADE)
    assert changes(retried) == {"parameters.level": (7, 9)}
    assert settle(stub).status.run_state == RUN_STATE_SUCCEEDED


def test_input_problems_fail_with_document_paths(stub, world):
    bad = document(parameters={"level": "high", "nope": 1})
    err = failure(apply, stub, bad)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.reason == "INVALID_INPUTS"
    assert err.violations == {
        "parameters.nope": "the bundle has no parameter 'nope'",
        "parameters.level": "'high' is not of type 'integer'",
    }
    err = failure(apply, stub, document(credentialSets=["missing"]))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == "CREDENTIAL_SET_NOT_FOUND"
    assert runs(stub) == []
    # The installation is stored (Porter stores it before it runs anything); fixing it installs.
    fixed = apply(stub, document())
    assert (fixed.outcome, fixed.decision) == (UPDATED, INSTALL)
    assert settle(stub).status.state == INSTALLATION_STATE_INSTALLED


def test_operator_resource_applies(stub, world):
    resource = {
        "apiVersion": "getporter.org/v1",
        "kind": "Installation",
        "metadata": {"name": "app", "namespace": "k8s-ns"},
        "spec": yaml.safe_load(document()),
        "status": {"phase": "Succeeded"},
    }
    resp = apply(stub, json.dumps(resource).encode())
    assert (resp.outcome, resp.decision) == (CREATED, INSTALL)
    assert (resp.installation.namespace, resp.installation.name) == (NS, NAME)
    settle(stub)


def test_state_fed_back_by_a_parameter_source_never_looks_like_drift(stub, fake):
    stateful = bundle("1.0.0")
    stateful["definitions"]["state"] = {"type": "string"}
    stateful["parameters"]["porter-state"] = {
        "definition": "state",
        "destination": {"path": "/porter/state"},
    }
    stateful["outputs"] = {
        "porter-state": {"definition": "state", "path": "/cnab/app/outputs/porter-state"}
    }
    stateful["custom"] = {
        "io.cnab.parameter-sources": {
            "porter-state": {
                "priority": ["output"],
                "sources": {"output": {"name": "porter-state"}},
            }
        }
    }
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/stateful:v1.0.0", bundle_json=json.dumps(stateful)
        )
    )
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS,
                name="creds",
                credentials=[NamedValueSource(name="token", source=src(value="t"))],
            )
        )
    )
    count = iter(range(1, 100))
    fake.behaviour = lambda spec: ContainerResult(
        exit_code=0, outputs={"porter-state": f"state-{next(count)}".encode()}
    )
    doc = document(
        bundle={"repository": "localhost:5000/stateful", "version": "1.0.0"}, parameterSets=None
    )
    assert apply(stub, doc).decision == INSTALL
    installed = settle(stub)
    assert installed.status.state == INSTALLATION_STATE_INSTALLED, runs(stub)[0].message
    assert "/porter/state" not in fake.specs[-1].files  # nothing to feed back yet
    # The install wrote state-1: the next run would get it, but that is no reason to upgrade.
    same = apply(stub, doc)
    assert (same.decision, list(same.changes)) == (NONE, [])
    forced = apply(stub, doc, force=True)
    assert forced.decision == UPGRADE
    settle(stub)
    assert fake.specs[-1].files["/porter/state"] == b"state-1"


def test_apply_of_a_bundle_with_dependencies_installs_them_and_then_is_in_sync(stub, fake):
    db = bundle("1.0.0")
    db.update(name="db", parameters={}, credentials={})
    db["outputs"] = {"conn": {"definition": "str", "path": "/cnab/app/outputs/conn"}}
    parent = bundle("1.0.0")
    parent.update(name="shop", credentials={})
    parent["parameters"] = {
        "conn": {"definition": "str", "required": True, "destination": {"env": "CONN"}}
    }
    parent["custom"] = {
        "io.cnab.dependencies": {"requires": {"db": {"bundle": "localhost:5000/db"}}},
        "io.cnab.parameter-sources": {
            "conn": {
                "priority": ["dependencies.output"],
                "sources": {"dependencies.output": {"dependency": "db", "name": "conn"}},
            }
        },
    }
    for name, doc in (("db", db), ("shop", parent)):
        stub.CreateBundle(
            pb.CreateBundleRequest(
                reference=f"localhost:5000/{name}:v1.0.0", bundle_json=json.dumps(doc)
            )
        )
    fake.behaviour = lambda spec: ContainerResult(
        exit_code=0,
        outputs={"conn": b"db://" + spec.env["CNAB_INSTALLATION_NAME"].encode()}
        if spec.env["CNAB_BUNDLE_NAME"] == "db"
        else {},
    )
    doc = document(
        name="shop",
        bundle={"repository": "localhost:5000/shop", "version": "1.0.0"},
        parameters={},
        credentialSets=None,
        parameterSets=None,
    )
    first = apply(stub, doc)
    assert first.decision == INSTALL
    wait_until(
        lambda: all(
            r.state not in (RUN_STATE_PENDING, RUN_STATE_RUNNING)
            for r in stub.ListInstallationRuns(
                pb.ListInstallationRunsRequest(namespace=NS, name="shop")
            ).runs
        ),
        "the parent's run to end",
    )
    assert [s.env["CNAB_INSTALLATION_NAME"] for s in fake.specs] == ["shop-db", "shop"]
    assert fake.specs[-1].env["CONN"] == "db://shop-db"
    again = apply(stub, doc)
    assert (again.decision, list(again.changes)) == (NONE, [])
