"""Dependencies that cannot run fail before anything runs or is recorded, naming the
dependency: a version range nothing satisfies, a cycle, malformed metadata."""

from __future__ import annotations

import json

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from tests.helpers import failure

NS, REG = "dev", "localhost:5000"


def bundle(name: str, version: str, requires: dict | None = None) -> str:
    doc: dict = {
        "schemaVersion": "v1.0.0",
        "name": name,
        "version": version,
        "invocationImages": [{"imageType": "docker", "image": f"localhost/{name}:v1"}],
    }
    if requires is not None:
        doc["custom"] = {"io.cnab.dependencies": {"requires": requires}}
    return json.dumps(doc)


def register(stub, name: str, version: str, requires: dict | None = None) -> None:
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference=f"{REG}/{name}:v{version}", bundle_json=bundle(name, version, requires)
        )
    )


def install(stub, name: str, version: str):
    inst = Installation(
        namespace=NS,
        name=name,
        bundle=BundleReference(repository=f"{REG}/{name}", tag=f"v{version}"),
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    return failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=name, action="install")
    )


def installations(stub) -> list[str]:
    found = stub.ListInstallations(pb.ListInstallationsRequest(namespace=NS)).installations
    return [i.name for i in found]


def test_a_range_nothing_satisfies(stub):
    for version in ("5.6.1", "8.0.0", "5.7.0-rc.1"):
        register(stub, "mysql", version)
    register(
        stub,
        "app",
        "1.0.0",
        {"mysql": {"bundle": f"{REG}/mysql", "version": {"ranges": ["5.7.x"]}}},
    )
    err = install(stub, "app", "1.0.0")
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DEPENDENCY_UNRESOLVED")
    assert err.metadata["dependency"] == "mysql"
    assert "dependency mysql" in err.message and "5.6.1, 5.7.0-rc.1, 8.0.0" in err.message
    assert installations(stub) == ["app"]  # nothing created
    assert not stub.ListClaims(pb.ListClaimsRequest(namespace=NS)).claims  # nothing recorded


@pytest.mark.parametrize("missing", ["unknown-repo", "none"])
def test_an_unknown_dependency_bundle(stub, missing):
    register(stub, "app", "1.0.0", {"db": {"bundle": f"{REG}/{missing}"}})
    err = install(stub, "app", "1.0.0")
    assert err.reason == "DEPENDENCY_UNRESOLVED" and "versions known here: none" in err.message


def test_a_cycle(stub):
    register(stub, "a", "1.0.0", {"b": {"bundle": f"{REG}/b"}})
    register(stub, "b", "1.0.0", {"c": {"bundle": f"{REG}/c"}})
    register(stub, "c", "1.0.0", {"a": {"bundle": f"{REG}/a"}})
    err = install(stub, "a", "1.0.0")
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DEPENDENCY_CYCLE")
    assert f"{REG}/a -> {REG}/b -> {REG}/c -> {REG}/a" in err.message
    assert installations(stub) == ["a"]


def test_malformed_dependencies(stub):
    register(stub, "app", "1.0.0", {"db": {"version": {"ranges": ["1.x"]}}})
    err = install(stub, "app", "1.0.0")
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INVALID_DEPENDENCIES")
    assert "requires.db.bundle" in err.message


def test_the_parents_own_inputs_are_checked_before_any_dependency_runs(stub):
    register(stub, "db", "1.0.0")
    doc = json.loads(bundle("app", "1.0.0", {"db": {"bundle": f"{REG}/db"}}))
    doc["definitions"] = {"str": {"type": "string"}}
    doc["parameters"] = {
        "name": {"definition": "str", "required": True, "destination": {"env": "NAME"}},
        # Sourced from the dependency, which has not run: no value needed yet.
        "conn": {"definition": "str", "required": True, "destination": {"env": "CONN"}},
    }
    doc["custom"]["io.cnab.parameter-sources"] = {
        "conn": {
            "priority": ["dependencies.output"],
            "sources": {"dependencies.output": {"dependency": "db", "name": "conn"}},
        }
    }
    stub.CreateBundle(
        pb.CreateBundleRequest(reference=f"{REG}/app:v1.0.0", bundle_json=json.dumps(doc))
    )
    err = install(stub, "app", "1.0.0")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(err.violations) == {"parameters.name"}
    assert installations(stub) == ["app"]


def test_a_dependency_named_by_full_reference_as_porter_writes_it(stub):
    register(stub, "app", "1.0.0", {"mysql": {"bundle": f"{REG}/mysql:v0.1.4", "name": "mysql"}})
    err = install(stub, "app", "1.0.0")
    assert (err.reason, err.metadata["dependency"]) == ("DEPENDENCY_UNRESOLVED", "mysql")
    assert f"bundle {REG}/mysql:v0.1.4 is not known here" in err.message
