"""Bundles with dependencies (CNAB 500) end to end with busybox bundles: a parent with two
dependencies installed, upgraded and uninstalled in order, their outputs wired to the parent's
parameters, and a failing dependency failing the parent with a run that names it."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    BundleReference,
    Installation,
)
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter_bundle.service import Services
from tests.helpers import ended_run, engine_services

pytestmark = pytest.mark.slow  # real containers: seconds each
NS, REG = "dev", "localhost:5000"

RUN_SCRIPT = r"""#!/bin/sh
out=/cnab/app/outputs
mkdir -p $out
case "$CNAB_BUNDLE_NAME" in
  db) printf 'db://%s@%s' "$CNAB_INSTALLATION_NAME" "$CNAB_BUNDLE_VERSION" > $out/conn ;;
  cache)
    [ "$FAIL_ON" = "$CNAB_ACTION" ] && { echo "cache refuses to $CNAB_ACTION" >&2; exit 4; }
    printf 'cache:%s' "$CNAB_ACTION" > $out/endpoint ;;
  shop) printf '%s|%s' "$CONN" "$ENDPOINT" > $out/seen ;;
esac
"""


def bundle(name: str, version: str, image: str, **extra) -> dict:
    doc = {
        "schemaVersion": "v1.0.0",
        "name": name,
        "version": version,
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {"str": {"type": "string"}},
        "parameters": {},
        "outputs": {},
    }
    for key, value in extra.items():
        doc[key] = value
    return doc


def out(name: str) -> dict:
    return {
        "definition": "str",
        "path": f"/cnab/app/outputs/{name}",
        "applyTo": ["install", "upgrade"],
    }


def shop(image: str, version: str, cache_range: str) -> dict:
    return bundle(
        "shop",
        version,
        image,
        parameters={
            "conn": {"definition": "str", "required": True, "destination": {"env": "CONN"}},
            "endpoint": {"definition": "str", "destination": {"env": "ENDPOINT"}},
        },
        outputs={"seen": out("seen")},
        custom={
            "io.cnab.dependencies": {
                "sequence": ["db", "cache"],
                "requires": {
                    "db": {"bundle": f"{REG}/db", "version": {"ranges": ["1.x"]}},
                    "cache": {"bundle": f"{REG}/cache", "version": {"ranges": [cache_range]}},
                },
            },
            "io.cnab.parameter-sources": {
                "conn": {
                    "priority": ["dependencies.output"],
                    "sources": {"dependencies.output": {"dependency": "db", "name": "conn"}},
                },
                "endpoint": {
                    "priority": ["dependencies.output"],
                    "sources": {"dependencies.output": {"dependency": "cache", "name": "endpoint"}},
                },
            },
        },
    )


@pytest.fixture
def services(store, podman_host) -> Services:
    return engine_services(store, podman_host)


@pytest.fixture
def world(stub, test_image):
    image = test_image("deps", RUN_SCRIPT)
    docs = {
        f"{REG}/db:v1.0.0": bundle("db", "1.0.0", image, outputs={"conn": out("conn")}),
        f"{REG}/db:v1.1.0": bundle("db", "1.1.0", image, outputs={"conn": out("conn")}),
        f"{REG}/db:v2.0.0": bundle("db", "2.0.0", image, outputs={"conn": out("conn")}),
        f"{REG}/cache:v0.1.0": bundle(
            "cache", "0.1.0", image, outputs={"endpoint": out("endpoint")}
        ),
        f"{REG}/cache:v0.2.0": bundle(
            "cache",
            "0.2.0",
            image,
            definitions={
                "str": {"type": "string"},
                "fail": {"type": "string", "default": "upgrade"},
            },
            parameters={"fail": {"definition": "fail", "destination": {"env": "FAIL_ON"}}},
            outputs={"endpoint": out("endpoint")},
        ),
        f"{REG}/shop:v1.0.0": shop(image, "1.0.0", "0.1.x"),
        f"{REG}/shop:v1.1.0": shop(image, "1.1.0", "0.2.x"),
    }
    for ref, doc in docs.items():
        stub.CreateBundle(pb.CreateBundleRequest(reference=ref, bundle_json=json.dumps(doc)))
    inst = Installation(
        namespace=NS, name="shop", bundle=BundleReference(repository=f"{REG}/shop", tag="v1.0.0")
    )
    return stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation


def execute(stub, name: str, action: str):
    run = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name=name, action=action), timeout=120
    ).run
    return ended_run(stub, NS, name, run.id, timeout=60)


def runs_of(stub, name: str) -> list:
    return list(
        stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace=NS, name=name)).runs
    )[::-1]


def inst(stub, name: str):
    return stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name=name)).installation


def outputs(stub, name: str, run_id: str) -> dict:
    found = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=name, run_id=run_id)
    ).outputs
    return {o.name: json_format.MessageToDict(o.value) for o in found}


def ends(run) -> int:
    return run.complete_time.ToNanoseconds()


def starts(run) -> int:
    return run.create_time.ToNanoseconds()


def test_parent_with_two_dependencies_installs_upgrades_and_uninstalls_in_order(stub, world):
    parent = execute(stub, "shop", "install")
    assert parent.state == RUN_STATE_SUCCEEDED, parent.message
    [db] = runs_of(stub, "shop-db")
    [cache] = runs_of(stub, "shop-cache")
    assert db.action == cache.action == ACTION_INSTALL
    assert ends(db) <= starts(cache) and ends(cache) <= starts(parent)  # in sequence, each waited
    assert inst(stub, "shop-db").bundle.tag == "v1.1.0"  # the highest version in 1.x
    assert inst(stub, "shop-cache").status.state == INSTALLATION_STATE_INSTALLED
    # The dependencies' outputs are the parent's parameters.
    assert outputs(stub, "shop", parent.id)["seen"] == "db://shop-db@1.1.0|cache:install"
    assert parent.parameters["conn"] == "db://shop-db@1.1.0"

    upgrade = execute(stub, "shop", "upgrade")
    assert upgrade.state == RUN_STATE_SUCCEEDED, upgrade.message
    db_up, cache_up = runs_of(stub, "shop-db")[-1], runs_of(stub, "shop-cache")[-1]
    assert db_up.action == cache_up.action == ACTION_UPGRADE
    assert ends(db_up) <= starts(cache_up) and ends(cache_up) <= starts(upgrade)
    assert outputs(stub, "shop", upgrade.id)["seen"] == "db://shop-db@1.1.0|cache:upgrade"

    gone = execute(stub, "shop", "uninstall")
    assert gone.state == RUN_STATE_SUCCEEDED, gone.message
    db_un, cache_un = runs_of(stub, "shop-db")[-1], runs_of(stub, "shop-cache")[-1]
    assert db_un.action == cache_un.action == ACTION_UNINSTALL
    assert db_un.state == cache_un.state == RUN_STATE_SUCCEEDED
    # Reverse order: the parent first, then cache, then db.
    assert ends(gone) <= starts(cache_un) and ends(cache_un) <= starts(db_un)
    for name in ("shop", "shop-db", "shop-cache"):
        assert inst(stub, name).status.state == INSTALLATION_STATE_UNINSTALLED


def test_a_failing_dependency_fails_the_parent_naming_it(stub, world):
    assert execute(stub, "shop", "install").state == RUN_STATE_SUCCEEDED
    # Version 1.1.0 takes cache 0.2.x, whose upgrade fails.
    shop_inst = inst(stub, "shop")
    shop_inst.bundle.tag = "v1.1.0"
    stub.UpdateInstallation(
        pb.UpdateInstallationRequest(
            installation=shop_inst, update_mask=FieldMask(paths=["bundle"])
        )
    )
    parent = execute(stub, "shop", "upgrade")
    assert parent.state == RUN_STATE_FAILED and parent.action == ACTION_UPGRADE
    failed_cache = runs_of(stub, "shop-cache")[-1]
    assert failed_cache.state == RUN_STATE_FAILED and failed_cache.bundle_version == "0.2.0"
    assert (
        f"dependency cache ({NS}/shop-cache) failed to upgrade (run {failed_cache.id})"
        in parent.message
    )
    assert runs_of(stub, "shop-db")[-1].state == RUN_STATE_SUCCEEDED  # db before it went through
    # The parent's run is recorded (a claim too), no container ran for it.
    claim = stub.GetClaim(pb.GetClaimRequest(claim_id=parent.id)).claim
    assert claim.result == RUN_STATE_FAILED
    results = stub.ListClaimResults(pb.ListClaimResultsRequest(claim_id=parent.id)).results
    assert [json.loads(r.result_json)["status"] for r in results] == ["pending", "failed"]
    assert not stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name="shop", run_id=parent.id)
    ).logs
