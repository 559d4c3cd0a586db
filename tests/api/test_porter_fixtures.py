"""Porter's own Installation / CredentialSet / ParameterSet documents, created through the API.

Each valid document from Porter's test data is mapped into the API resource by the
service's mapping (porter_bundle.documents: camelCase -> proto fields, the parameters map
-> Struct, sources -> ValueSource), created with the Create* calls, read back and compared
field by field with the document. Applying documents (Apply*, with validation and the
schemaVersion check) is tested in test_documents.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf.json_format import MessageToDict

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet, ValueSource
from porter_bundle.documents import to_credential_set, to_installation, to_parameter_set
from porter_bundle.documents.mapping import to_source
from tests.helpers import FIXTURES, failure

PORTER = FIXTURES / "porter"
TESTDATA = PORTER / "tests" / "testdata"

INSTALLATIONS = [
    TESTDATA / "installations" / "mybuns.yaml",
    TESTDATA / "installations" / "myenv.yaml",
]
CREDENTIAL_SETS = [TESTDATA / "creds" / "mybuns.yaml", TESTDATA / "creds" / "alt-mybuns.yaml"]
PARAMETER_SETS = [
    TESTDATA / "params" / "mybuns.yaml",
    TESTDATA / "params" / "myenv.yaml",
    PORTER / "pkg" / "storage" / "testdata" / "paramset.json",  # all five source kinds
    PORTER
    / "pkg"
    / "porter"
    / "testdata"
    / "paramset-native.json",  # typed values, no schemaVersion
]
# Left out: */invalid-schema.yaml (schemaVersion 0.38.5, which Porter refuses).

SOURCE_KINDS = ("value", "env", "path", "command", "secret")


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    return doc


def rel(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


def to_set(doc: dict[str, Any], message: type[Any], entries_key: str) -> Any:
    """The set resource of a document, through the service's mapping (porter_bundle.documents)."""
    convert = to_credential_set if message is CredentialSet else to_parameter_set
    resource = convert(doc)
    assert isinstance(resource, message) and entries_key in ("credentials", "parameters")
    return resource


# --- comparing what was stored with the document ----------------------------------------


def assert_installation_matches(got: Installation, doc: dict[str, Any]) -> None:
    assert got.namespace == doc.get("namespace", "")
    assert got.name == doc["name"]
    assert got.schema_version == doc["schemaVersion"]
    assert got.uninstalled is doc.get("uninstalled", False)
    assert dict(got.labels) == doc.get("labels", {})
    for key in ("repository", "digest", "version", "tag"):
        assert getattr(got.bundle, key) == doc["bundle"].get(key, ""), key
    assert list(got.credential_sets) == doc.get("credentialSets", [])
    assert list(got.parameter_sets) == doc.get("parameterSets", [])
    assert MessageToDict(got.parameters) == doc.get("parameters", {})
    assert MessageToDict(got.custom) == doc.get("custom", {})


def assert_set_matches(
    got: Any, doc: dict[str, Any], entries_key: str, default_version: str, *, redacts: bool
) -> None:
    assert got.namespace == doc.get("namespace", "")
    assert got.name == doc["name"]
    assert got.schema_version == doc.get("schemaVersion", default_version)
    assert dict(got.labels) == doc.get("labels", {})
    entries = list(getattr(got, entries_key))
    assert [e.name for e in entries] == [e["name"] for e in doc[entries_key]]
    for entry, want in zip(entries, doc[entries_key], strict=True):
        (kind, value), *_ = want["source"].items()
        if kind == "value" and redacts:
            assert entry.source == ValueSource(redacted=True), entry.name
        elif kind == "value":
            assert entry.source.WhichOneof("kind") == "value"
            assert MessageToDict(entry.source.value) == value, entry.name
            assert not entry.source.redacted
        else:
            assert entry.source.WhichOneof("kind") == kind, entry.name
            assert getattr(entry.source, kind) == value, entry.name


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", INSTALLATIONS, ids=rel)
def test_porter_installation_document(stub, path):
    doc = load(path)

    created = stub.CreateInstallation(
        pb.CreateInstallationRequest(installation=to_installation(doc))
    ).installation
    got = stub.GetInstallation(
        pb.GetInstallationRequest(namespace=created.namespace, name=doc["name"])
    ).installation

    assert got == created
    assert_installation_matches(got, doc)


@pytest.mark.parametrize("path", CREDENTIAL_SETS, ids=rel)
def test_porter_credential_set_document(stub, path):
    doc = load(path)

    created = stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(credential_set=to_set(doc, CredentialSet, "credentials"))
    ).credential_set
    got = stub.GetCredentialSet(pb.GetCredentialSetRequest(name=doc["name"])).credential_set

    assert got == created
    assert_set_matches(got, doc, "credentials", "1.0.1", redacts=True)


@pytest.mark.parametrize("path", PARAMETER_SETS, ids=rel)
def test_porter_parameter_set_document(stub, path):
    doc = load(path)

    created = stub.CreateParameterSet(
        pb.CreateParameterSetRequest(parameter_set=to_set(doc, ParameterSet, "parameters"))
    ).parameter_set
    got = stub.GetParameterSet(pb.GetParameterSetRequest(name=doc["name"])).parameter_set

    assert got == created
    assert_set_matches(got, doc, "parameters", "1.1.0", redacts=False)


def test_paramset_uses_every_source_kind():
    doc = load(PORTER / "pkg" / "storage" / "testdata" / "paramset.json")
    kinds = [to_source(e["source"]).WhichOneof("kind") for e in doc["parameters"]]
    assert sorted(kinds) == sorted(SOURCE_KINDS)


def test_native_values_keep_their_json_types(stub):
    doc = load(PORTER / "pkg" / "porter" / "testdata" / "paramset-native.json")
    stub.CreateParameterSet(
        pb.CreateParameterSetRequest(parameter_set=to_set(doc, ParameterSet, "parameters"))
    )
    got = stub.GetParameterSet(pb.GetParameterSetRequest(name="mypset")).parameter_set

    kinds = {e.name: e.source.value.WhichOneof("kind") for e in got.parameters}
    assert kinds == {
        "string": "string_value",
        "number": "number_value",
        "integer": "number_value",
        "boolean": "bool_value",
        "array": "list_value",
        "object": "struct_value",
    }
    assert got.schema_version == "1.1.0"  # the ParameterSet schema that allows typed values


def test_porter_documents_together(stub):
    """The mybuns installation with the mybuns sets it names: the sets are now in use."""
    for path in CREDENTIAL_SETS:
        stub.CreateCredentialSet(
            pb.CreateCredentialSetRequest(
                credential_set=to_set(load(path), CredentialSet, "credentials")
            )
        )
    for path in PARAMETER_SETS[:2]:
        stub.CreateParameterSet(
            pb.CreateParameterSetRequest(
                parameter_set=to_set(load(path), ParameterSet, "parameters")
            )
        )
    for path in INSTALLATIONS:
        stub.CreateInstallation(
            pb.CreateInstallationRequest(installation=to_installation(load(path)))
        )

    listed = stub.ListInstallations(
        pb.ListInstallationsRequest(labels={"generator": "porter-operator"})
    )
    assert [i.name for i in listed.installations] == ["mybuns"]

    err = failure(stub.DeleteCredentialSet, pb.DeleteCredentialSetRequest(name="mybuns"))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.metadata["installations"] == "mybuns (global namespace)"
    err = failure(stub.DeleteParameterSet, pb.DeleteParameterSetRequest(name="myenv"))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.metadata["installations"] == "myenv (global namespace)"
    stub.DeleteCredentialSet(pb.DeleteCredentialSetRequest(name="alt-mybuns"))  # nobody names it
