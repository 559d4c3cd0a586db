"""Porter's documents as Porter and its operator write them, applied as Porter applies them.

Each case starts from a real file (tests/fixtures): Porter's ``installations show -o json``
output (read-only ``id`` and ``_calculated``), the operator's sample ParameterSet (a name
listed twice), Porter's test data with scalars unquoted (``thing: 1``, ``value: 11``), and
documents exactly as the operator's ``yaml.Marshal`` of its CRD spec writes them (no
``schemaType``, ``namespace`` always present, possibly ``""``).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
import yaml

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import RUN_STATE_PENDING, RUN_STATE_RUNNING
from porter.bundle.v1.value_set_pb2 import NamedValueSource, ParameterSet, ValueSource
from porter_bundle.documents import DocumentKind
from porter_bundle.service import Services
from tests.fake_executor import FakeExecutor
from tests.helpers import failure, wait_until
from tests.porter_documents import OPERATOR, PORTER, apply, bundle_json, prepare_fixture_world

CREATED, UNCHANGED = pb.APPLY_OUTCOME_CREATED, pb.APPLY_OUTCOME_UNCHANGED
SHOW = PORTER / "pkg" / "porter" / "testdata" / "show" / "expected-output.json"
TESTDATA = PORTER / "tests" / "testdata"


@pytest.fixture
def services(store) -> Services:
    fake = FakeExecutor()
    return Services.create(store, executor=lambda: fake)


@pytest.fixture
def world(stub, monkeypatch):
    monkeypatch.setenv("USER", "porter-user")
    prepare_fixture_world(stub)


def settled(stub, namespace: str, name: str) -> Any:
    def done() -> bool:
        runs = stub.ListInstallationRuns(
            pb.ListInstallationRunsRequest(namespace=namespace, name=name)
        ).runs
        return all(r.state not in (RUN_STATE_PENDING, RUN_STATE_RUNNING) for r in runs)

    wait_until(done, f"the runs of {namespace}/{name} to end", timeout=20)
    return stub.GetInstallation(pb.GetInstallationRequest(namespace=namespace, name=name))


# --- Porter's read-only fields ------------------------------------------------------------


def test_porter_installations_show_output_applies_ignoring_its_read_only_fields(stub):
    raw = SHOW.read_bytes()
    shown = json.loads(raw)
    assert {"id", "_calculated", "status"} <= set(shown)  # as `porter installations show -o json`
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/wordpress:v0.1.0",
            bundle_json=bundle_json(
                "wordpress", "0.1.0", {"logLevel": "int", "secretString": "str"}
            ),
        )
    )
    stub.CreateParameterSet(
        pb.CreateParameterSetRequest(
            parameter_set=ParameterSet(
                namespace="dev",
                name="dev-env",
                parameters=[NamedValueSource(name="logLevel", source=ValueSource(env="USER"))],
            )
        )
    )
    document = raw.replace(b'"getporter/wordpress"', b'"localhost:5000/wordpress"')
    resp = apply(stub, DocumentKind.INSTALLATION, document)
    assert resp.outcome == CREATED and list(resp.warnings) == []
    inst = resp.installation
    assert (inst.namespace, inst.name) == ("dev", "mywordpress")
    assert inst.id != shown["id"]  # Porter's ID is read-only: the server gives its own
    assert dict(inst.labels) == shown["labels"]
    assert list(inst.parameter_sets) == ["dev-env"]
    settled(stub, "dev", "mywordpress")
    # Applying the same output again changes nothing.
    again = apply(stub, DocumentKind.INSTALLATION, document)
    assert again.outcome == UNCHANGED and again.decision == pb.APPLY_DECISION_NONE


def test_read_only_fields_must_still_have_porters_types(stub):
    doc = json.loads(SHOW.read_bytes())
    doc["_calculated"] = "installed"
    err = failure(apply, stub, DocumentKind.INSTALLATION, json.dumps(doc).encode())
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a mapping" in err.violations["_calculated"]


# --- the operator's sample ParameterSet ----------------------------------------------------


def test_operator_sample_parameter_set_later_entry_wins_with_a_warning(stub):
    raw = (OPERATOR / "config" / "samples" / "_v1_parameterset.yaml").read_bytes()
    resp = apply(stub, DocumentKind.PARAMETER_SET, raw)
    assert resp.outcome == CREATED
    assert list(resp.warnings) == [
        "spec.parameters[1]: 'test-secret' is also listed at spec.parameters[0]; "
        "the last entry wins, as in Porter"
    ]
    [entry] = resp.parameter_set.parameters
    assert entry.name == "test-secret" and entry.source == ValueSource(secret="test-secret")
    again = apply(stub, DocumentKind.PARAMETER_SET, raw)
    assert again.outcome == UNCHANGED and len(again.warnings) == 1


def test_credential_set_names_listed_again_take_the_last_entry(stub):
    doc = yaml.safe_load((TESTDATA / "creds" / "mybuns.yaml").read_text())
    first = doc["credentials"][0]
    doc["credentials"].append({"name": first["name"], "source": {"env": "OTHER"}})
    resp = apply(stub, DocumentKind.CREDENTIAL_SET, yaml.safe_dump(doc).encode())
    last = len(doc["credentials"]) - 1
    assert list(resp.warnings) == [
        f"credentials[{last}]: {first['name']!r} is also listed at credentials[0]; "
        "the last entry wins, as in Porter"
    ]
    got = {c.name: c.source for c in resp.credential_set.credentials}
    assert got[first["name"]] == ValueSource(env="OTHER")
    assert len(resp.credential_set.credentials) == last


# --- scalars where Porter wants a string ---------------------------------------------------


def test_unquoted_label_and_version_are_their_text(stub, world):
    raw = (TESTDATA / "installations" / "mybuns.yaml").read_bytes()
    assert b'thing: "1"' in raw
    for apply_set in ("creds", "params"):
        kind = DocumentKind.CREDENTIAL_SET if apply_set == "creds" else DocumentKind.PARAMETER_SET
        apply(stub, kind, (TESTDATA / apply_set / "mybuns.yaml").read_bytes())
    resp = apply(stub, DocumentKind.INSTALLATION, raw.replace(b'thing: "1"', b"thing: 1"))
    assert resp.outcome == CREATED
    assert resp.installation.labels["thing"] == "1"
    settled(stub, "", "mybuns")
    # The same as Porter's own quoted file: nothing changes.
    again = apply(stub, DocumentKind.INSTALLATION, raw)
    assert again.outcome == UNCHANGED


@pytest.mark.parametrize(
    ("written", "text"), [("11", "11"), ("1.50", "1.5"), ("true", "true"), ("1e3", "1000")]
)
def test_parameter_set_1_0_1_value_is_text_as_porter_formats_it(stub, written, text):
    raw = (TESTDATA / "params" / "mybuns.yaml").read_bytes()
    assert b"schemaVersion: 1.0.1" in raw and b'value: "11"' in raw
    document = raw.replace(b'value: "11"', f"value: {written}".encode())
    resp = apply(stub, DocumentKind.PARAMETER_SET, document)
    [entry] = resp.parameter_set.parameters
    assert entry.source.value.string_value == text


def test_parameter_set_1_1_0_values_keep_their_type(stub):
    raw = (TESTDATA / "params" / "mybuns.yaml").read_bytes()
    document = raw.replace(b"1.0.1", b"1.1.0").replace(b'value: "11"', b"value: 11")
    [entry] = apply(stub, DocumentKind.PARAMETER_SET, document).parameter_set.parameters
    assert entry.source.value.number_value == 11


def test_json_installations_still_refuse_a_number_label(stub):
    doc = yaml.safe_load((TESTDATA / "installations" / "mybuns.yaml").read_text())
    doc["labels"]["thing"] = 1  # Porter's JSON reader refuses a number for a string
    err = failure(apply, stub, DocumentKind.INSTALLATION, json.dumps(doc).encode())
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a string" in err.violations["labels.thing"]


# --- documents as the operator writes them --------------------------------------------------


def operator_document(resource: Any) -> bytes:
    """What the operator's ``ToPorterDocument`` (yaml.v3 ``Marshal`` of the spec) writes:
    spec fields in Go struct order, no schemaType, ``namespace`` always, 4-space indent."""
    spec = yaml.safe_load(resource.read_text())["spec"]
    order = ["schemaVersion", "name", "namespace", "uninstalled", "bundle", "labels"]
    order += ["credentialSets", "parameterSets", "credentials", "parameters"]
    doc = {
        k: spec.get(k, "") if k == "namespace" else spec[k]
        for k in order
        if k in spec or k == "namespace"
    }
    return yaml.safe_dump(doc, sort_keys=False, indent=4).encode()


def test_operator_written_documents_apply(stub, world):
    samples = OPERATOR / "config" / "samples"
    creds = operator_document(samples / "_v1_credentialset.yaml")
    assert b"schemaType" not in creds and b"namespace: operator" in creds
    assert apply(stub, DocumentKind.CREDENTIAL_SET, creds).outcome == CREATED
    params = apply(
        stub, DocumentKind.PARAMETER_SET, operator_document(samples / "_v1_parameterset.yaml")
    )
    assert params.outcome == CREATED and len(params.warnings) == 1
    inst = apply(stub, DocumentKind.INSTALLATION, operator_document(samples / "porter-hello.yaml"))
    assert inst.outcome == CREATED
    assert (inst.installation.namespace, inst.installation.name) == ("operator", "hello")
    settled(stub, "operator", "hello")


def test_operator_written_empty_namespace_is_the_global_namespace(stub, world):
    raw = (OPERATOR / "api" / "v1" / "testdata" / "installation.yaml").read_bytes()
    assert b"namespace: dev\n" in raw and b"schemaType" not in raw
    resp = apply(
        stub, DocumentKind.INSTALLATION, raw.replace(b"namespace: dev\n", b'namespace: ""\n')
    )
    assert resp.outcome == CREATED
    assert (resp.installation.namespace, resp.installation.name) == ("", "mybuns")
    settled(stub, "", "mybuns")


# --- export -> apply without revealing ------------------------------------------------------


def test_withheld_marker_without_a_stored_value_is_refused(stub, world):
    raw = (TESTDATA / "installations" / "mybuns.yaml").read_bytes()
    document = raw.replace(b'password: "supersecret"', b"password: {redacted: true}")
    err = failure(apply, stub, DocumentKind.INSTALLATION, document)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "keeps the stored value" in err.violations["parameters.password"]
    assert stub.ListInstallations(pb.ListInstallationsRequest()).total_size == 0
