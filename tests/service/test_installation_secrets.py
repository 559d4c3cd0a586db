"""An installation's sensitive parameters (its bundle marks them writeOnly): withheld from the
stored message and every response, encrypted in the database, used by runs and by apply's
comparison. Through the real server over a real SQLite file, with a fake engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import field_mask_pb2, json_format
from google.protobuf.message import Message

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter_bundle.client.apply import _change_line
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from tests.fake_executor import FakeExecutor
from tests.helpers import ended_run, sensitive_bundle

NS, NAME = "dev", "vault"
SECRET, CHANGED = "inst-secret-Ru81Xk", "inst-secret-changed-Tz42Pq"
BUNDLE = sensitive_bundle()
BUNDLE_REF = BundleReference(repository="localhost:5000/vault", version="1.0.0")


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


def _register(stub) -> None:
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/vault:v1.0.0", bundle_json=json.dumps(BUNDLE)
        )
    )


def _installation(**parameters: Any) -> Installation:
    inst = Installation(namespace=NS, name=NAME, bundle=BUNDLE_REF)
    inst.parameters.update(parameters)
    return inst


def _document(**parameters: Any) -> bytes:
    doc = {
        "schemaType": "Installation",
        "schemaVersion": "1.0.2",
        "namespace": NS,
        "name": NAME,
        "bundle": {"repository": "localhost:5000/vault", "version": "1.0.0"},
        "parameters": parameters,
    }
    return yaml.safe_dump(doc).encode()


def _get(stub, *, reveal: bool = False) -> Installation:
    req = pb.GetInstallationRequest(namespace=NS, name=NAME, reveal_sensitive=reveal)
    got: Installation = stub.GetInstallation(req).installation
    return got


def _settle(stub, run_id: str) -> None:
    run = ended_run(stub, NS, NAME, run_id)
    assert run.state == RUN_STATE_SUCCEEDED, run.message


def _run(stub, action: str) -> None:
    run = stub.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=NAME, action=action)).run
    _settle(stub, run.id)


def _plain(inst: Installation) -> dict[str, Any]:
    values: dict[str, Any] = json_format.MessageToDict(inst.parameters)
    return values


def test_sensitive_installation_parameters_are_withheld_encrypted_and_used(
    stub, server, fake, db_path: Path
):
    _register(stub)
    responses: list[Message] = []

    def call(method: Any, request: Message) -> Any:
        response = method(request)
        responses.append(response)
        return response

    created = call(
        stub.CreateInstallation,
        pb.CreateInstallationRequest(installation=_installation(password=SECRET, color="red")),
    ).installation
    assert _plain(created) == {"color": "red"}
    assert list(created.sensitive_parameters) == ["password"]

    # Every plain read: the name is listed, the value is not there.
    got = call(stub.GetInstallation, pb.GetInstallationRequest(namespace=NS, name=NAME))
    assert _plain(got.installation) == {"color": "red"}
    assert list(got.installation.sensitive_parameters) == ["password"]
    listed = call(stub.ListInstallations, pb.ListInstallationsRequest(namespace=NS))
    assert list(listed.installations[0].sensitive_parameters) == ["password"]
    for fmt in (pb.DOCUMENT_FORMAT_YAML, pb.DOCUMENT_FORMAT_JSON):
        exported = call(
            stub.ExportInstallation,
            pb.ExportInstallationRequest(namespace=NS, name=NAME, format=fmt),
        )
        assert yaml.safe_load(exported.document)["parameters"] == {
            "color": "red",
            "password": {"redacted": True},  # withheld: apply keeps the stored value
        }
        assert SECRET not in exported.document
        assert list(exported.sensitive_parameters) == ["password"]

    # A run gets the real value.
    _run(stub, "install")
    assert fake.specs[-1].env["PASSWORD"] == SECRET and fake.specs[-1].env["COLOR"] == "red"

    # An update without "parameters" in its mask keeps the stored value.
    labeled = _installation()
    labeled.labels["team"] = "blue"
    kept = call(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(
            installation=labeled, update_mask=field_mask_pb2.FieldMask(paths=["labels"])
        ),
    ).installation
    assert list(kept.sensitive_parameters) == ["password"] and _plain(kept) == {"color": "red"}
    assert _plain(_get(stub, reveal=True)) == {"color": "red", "password": SECRET}

    # Applying the same desired state (secret included) is in sync.
    same = call(
        stub.ApplyInstallation,
        pb.ApplyInstallationRequest(document=_document(password=SECRET, color="red")),
    )
    assert same.decision == pb.APPLY_DECISION_NONE, same.reason
    assert list(same.changed_fields) == ["labels"]  # the document has none
    # A changed secret upgrades; the difference is masked.
    dry = call(
        stub.ApplyInstallation,
        pb.ApplyInstallationRequest(
            document=_document(password=CHANGED, color="red"), dry_run=True
        ),
    )
    assert dry.decision == pb.APPLY_DECISION_UPGRADE
    assert list(dry.installation.sensitive_parameters) == ["password"]
    changed = call(
        stub.ApplyInstallation,
        pb.ApplyInstallationRequest(document=_document(password=CHANGED, color="red")),
    )
    assert changed.decision == pb.APPLY_DECISION_UPGRADE
    assert [(c.field, c.sensitive) for c in changed.changes] == [("parameters.password", True)]
    (change,) = changed.changes
    assert not change.HasField("current") and not change.HasField("desired")
    assert _change_line(change) == "    parameters.password: *** -> *** (sensitive)"
    _settle(stub, changed.run.id)
    assert fake.specs[-1].env["PASSWORD"] == CHANGED
    assert list(changed.installation.sensitive_parameters) == ["password"]

    # An update of "parameters" replaces them all: a secret not given again is gone.
    dropped = call(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(
            installation=_installation(color="green"),
            update_mask=field_mask_pb2.FieldMask(paths=["parameters"]),
        ),
    ).installation
    assert list(dropped.sensitive_parameters) == [] and _plain(dropped) == {"color": "green"}
    assert _plain(_get(stub, reveal=True)) == {"color": "green"}
    call(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(
            installation=_installation(password=CHANGED, color="plain-Yb73"),
            update_mask=field_mask_pb2.FieldMask(paths=["parameters"]),
        ),
    )

    server.stop(0)
    data = (
        b"".join(r.SerializeToString() for r in responses)
        + "".join(str(r) for r in responses).encode()
    )
    for secret in (SECRET, CHANGED):
        assert secret.encode() not in data
    if server.store.is_sqlite:
        server.store.close()
        files = [db_path, Path(f"{db_path}-wal")]
        stored = b"".join(p.read_bytes() for p in files if p.exists())
        assert b"plain-Yb73" in stored  # plain values are there: the search would find a leak
        for secret in (SECRET, CHANGED):
            assert secret.encode() not in stored


def test_values_are_stored_as_given_until_the_bundle_is_known(stub, services):
    created = stub.CreateInstallation(
        pb.CreateInstallationRequest(installation=_installation(password=SECRET, color="red"))
    ).installation
    # The bundle is not known here: nothing says password is sensitive.
    assert _plain(created) == {"color": "red", "password": SECRET}
    assert list(created.sensitive_parameters) == []
    _register(stub)
    # The next write with a known bundle withholds it.
    labeled = _installation()
    labeled.labels["team"] = "blue"
    updated = stub.UpdateInstallation(
        pb.UpdateInstallationRequest(
            installation=labeled, update_mask=field_mask_pb2.FieldMask(paths=["labels"])
        )
    ).installation
    assert _plain(updated) == {"color": "red"}
    assert list(updated.sensitive_parameters) == ["password"]
    assert _plain(_get(stub, reveal=True)) == {"color": "red", "password": SECRET}
    # Once withheld, a write while the bundle is unknown again keeps it withheld.
    stub.DeleteBundle(pb.DeleteBundleRequest(reference="localhost:5000/vault:v1.0.0"))
    again = stub.UpdateInstallation(
        pb.UpdateInstallationRequest(
            installation=_installation(password=CHANGED, color="red"),
            update_mask=field_mask_pb2.FieldMask(paths=["parameters"]),
        )
    ).installation
    assert _plain(again) == {"color": "red"}
    assert list(again.sensitive_parameters) == ["password"]
    inst = services.installations.get(NS, NAME)
    assert services.installations.parameters_of(inst) == {"color": "red", "password": CHANGED}
