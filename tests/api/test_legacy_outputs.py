"""porter.v1alpha1.Porter/ListInstallationLatestOutputs as the Porter operator reads it.

Outputs come from the files a bundle's container left (``collect_outputs``, the runner's own
step), for Porter's real mybuns bundle (tests/fixtures, built by Porter: ``porter-state`` is
internal, ``tfstate`` a base64 file) and variants of it with more output types. Calls go over a
real channel with gRPC's default 4 MiB receive limit, the operator's grpc-go default.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
from typing import Any

import grpc
import pytest

from installation.v1alpha1 import installation_pb2 as ipb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle.errors import ResourceExhausted
from porter_bundle.service.actions import collect_outputs
from porter_bundle.service.legacy import MAX_LIST_RESPONSE_BYTES, MAX_OUTPUTS_RESPONSE_BYTES
from porter_bundle.service.runs import NewRun
from tests.helpers import FIXTURES

NS, NAME = "dev", "mybuns"
MYBUNS = FIXTURES / "porter" / "pkg" / "cnab" / "config-adapter" / "testdata"
MYBUNS = MYBUNS / "mybuns-depsv1.bundle.json"
GRPC_DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024
ACTIONS = {ACTION_INSTALL: "install", ACTION_UPGRADE: "upgrade"}


@pytest.fixture
def legacy(channel: grpc.Channel) -> porter_pb2_grpc.PorterStub:
    return porter_pb2_grpc.PorterStub(channel)


def mybuns() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(MYBUNS.read_text())
    return doc


def with_outputs(doc: dict[str, Any], **outputs: dict[str, Any]) -> dict[str, Any]:
    """The bundle with more outputs (name -> definition), each at its default path."""
    doc = copy.deepcopy(doc)
    for name, definition in outputs.items():
        doc["definitions"][f"{name}-output"] = definition
        doc["outputs"][name] = {"definition": f"{name}-output"}
    return doc


class World:
    def __init__(self, server: Any, stub: Any) -> None:
        self.server, self.stub = server, stub
        stub.CreateInstallation(
            pb.CreateInstallationRequest(
                installation=Installation(
                    namespace=NS,
                    name=NAME,
                    bundle=BundleReference(repository="localhost:5000/mybuns", version="0.1.2"),
                )
            )
        )

    def run(
        self,
        bundle: dict[str, Any],
        files: dict[str, bytes],
        *,
        action: int = ACTION_INSTALL,
        state: int = RUN_STATE_SUCCEEDED,
        tag: str = "v0.1.2",
    ) -> str:
        """A run of ``bundle`` (registered under ``tag``) whose container left ``files``."""
        reference = f"localhost:5000/mybuns:{tag}"
        registered = self.stub.CreateBundle(
            pb.CreateBundleRequest(reference=reference, bundle_json=json.dumps(bundle))
        ).bundle
        values, problems = collect_outputs(bundle, ACTIONS[action], files)
        assert problems == []
        runs = self.server.services.runs
        run, _ = runs.create(
            NS,
            NAME,
            NewRun(
                action=action,
                bundle_reference=reference,
                bundle_digest=registered.digest,
                bundle_version=bundle["version"],
            ),
        )
        runs.start(run.id)
        runs.finish(run.id, state, "", values)
        return str(run.id)


@pytest.fixture
def world(server, stub) -> World:
    return World(server, stub)


def latest(legacy: Any) -> Any:
    return legacy.ListInstallationLatestOutputs(
        ipb.ListInstallationLatestOutputRequest(namespace=NS, name=NAME)
    )


def table(resp: Any) -> dict[str, tuple[str, bool, str | None]]:
    return {
        v.name: (v.type, v.sensitive, v.value.string_value if v.HasField("value") else None)
        for v in resp.outputs
    }


MYBUNS_FILES = {
    "connStr": b"server=mysql;port=3306",
    "msg": b"Hello, World!\n",
    "mylogs": b"line 1\nline 2\n",
    "result": b"s3cret-result",
    "tfstate": b'{"version": 4, "resources": []}\n',
}


def test_a_3_mb_porter_state_is_skipped_and_the_response_fits_the_operator(world, legacy):
    state = os.urandom(3 * 1024 * 1024)  # a Terraform state as big as the issue's
    world.run(mybuns(), {**MYBUNS_FILES, "porter-state": state})
    resp = latest(legacy)  # a 4 MiB receive limit, as the operator's grpc-go client has
    assert resp.ByteSize() < MAX_OUTPUTS_RESPONSE_BYTES < GRPC_DEFAULT_MAX_RECEIVE
    got = table(resp)
    assert "porter-state" not in got  # its definition says "$comment": "porter-internal"
    assert sorted(got) == ["connStr", "msg", "mylogs", "result", "tfstate"]
    assert got["msg"] == ("string", False, "Hello, World!\n")
    assert got["result"] == ("string", True, None)  # sensitive: withheld
    # A base64 string of a Porter-built bundle is a file, its value the base64 text.
    kind, _, value = got["tfstate"]
    assert kind == "file" and value is not None
    assert base64.b64decode(value) == MYBUNS_FILES["tfstate"]
    # Recorded with the output: still skipped once the bundle is no longer stored.
    world.stub.DeleteBundle(pb.DeleteBundleRequest(reference="localhost:5000/mybuns:v0.1.2"))
    again = table(latest(legacy))
    assert "porter-state" not in again and sorted(again) == sorted(got)


def test_values_are_the_bytes_the_bundle_wrote(world, legacy):
    bundle = with_outputs(
        mybuns(),
        ratio={"type": "number"},
        count={"type": "integer"},
        config={"type": "object"},
        flags={"type": "array"},
        ok={"type": "boolean"},
    )
    written = {
        "ratio": b"1.50",
        "count": b"42\n",
        "config": b'{ "replicas": 3,\n  "hosts": ["b", "a"] }\n',
        "flags": b"[1, 2.0, 3]",
        "ok": b"true\n",
    }
    world.run(bundle, {**MYBUNS_FILES, "porter-state": b"state", **written})
    got = table(latest(legacy))
    for name, raw in written.items():
        assert got[name][2] == raw.decode(), name
    assert got["ratio"][0] == "number" and got["config"][0] == "object"
    # The v1 API keeps typed values.
    v1 = world.stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME, run_id="latest")
    )
    typed = {o.name: o.value for o in v1.outputs}
    assert typed["ratio"].number_value == 1.5 and typed["count"].number_value == 42


def test_base64_is_a_file_only_where_porter_supports_file_parameters(world, legacy):
    bundle = mybuns()
    del bundle["custom"]["sh.porter"]
    bundle["requiredExtensions"].remove("sh.porter.file-parameters")
    world.run(bundle, {**MYBUNS_FILES, "porter-state": b"state"})
    assert table(latest(legacy))["tfstate"][0] == "string"


def test_outputs_listed_are_those_of_the_bundle_of_the_latest_run_with_outputs(world, legacy):
    v1 = with_outputs(mybuns(), extra={"type": "string"})
    world.run(v1, {**MYBUNS_FILES, "porter-state": b"s", "extra": b"from v1"})
    assert "extra" in table(latest(legacy))
    # An upgrade to a version that drops "extra": Porter no longer lists it.
    v2 = copy.deepcopy(mybuns())
    v2["version"] = "0.1.3"
    upgrade = {k: v for k, v in MYBUNS_FILES.items() if k != "connStr"}  # install-only output
    world.run(v2, {**upgrade, "porter-state": b"s2"}, action=ACTION_UPGRADE, tag="v0.1.3")
    got = table(latest(legacy))
    assert "extra" not in got
    assert got["connStr"][2] == "server=mysql;port=3306"  # still the latest value of that name
    # A later run that produced no outputs changes nothing.
    v3 = with_outputs(v2, late={"type": "string", "default": "d"})
    v3["version"], v3["outputs"] = "0.1.4", {}
    world.run(v3, {}, action=ACTION_UPGRADE, state=RUN_STATE_FAILED, tag="v0.1.4")
    assert table(latest(legacy)) == got


def test_large_values_are_left_out_to_stay_within_the_limit(world, legacy, caplog):
    big = {f"big{i}": {"type": "string"} for i in range(3)}
    bundle = with_outputs(mybuns(), **big)
    files = {f"big{i}": (b"x" * (400_000 + i)) for i in range(3)}
    with caplog.at_level(logging.WARNING, logger="porter_bundle.service.legacy"):
        world.run(bundle, {**MYBUNS_FILES, "porter-state": b"s", **files})
        resp = latest(legacy)
    assert resp.ByteSize() <= MAX_OUTPUTS_RESPONSE_BYTES
    got = table(resp)
    assert set(got) >= {"big0", "big1", "big2"}  # still listed
    assert got["big2"][2] is None  # the largest value is left out first
    assert got["big0"][2] == files["big0"].decode() and got["big1"][2] == files["big1"].decode()
    assert got["msg"][2] == "Hello, World!\n"
    [said] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert "'big2'" in said and "dev/mybuns" in said and "xxx" not in said


def test_a_list_no_grpc_client_could_receive_is_resource_exhausted(world, stub):
    for name in ("a", "b", "c"):
        stub.CreateInstallation(
            pb.CreateInstallationRequest(
                installation=Installation(
                    namespace=NS, name=name, bundle=BundleReference(repository="r.io/b", tag="t")
                )
            )
        )
    service = world.server.services.legacy
    every = {"name": "", "namespace": "*", "all_namespaces": True, "labels": {}}
    one = service.list_installations(**every, limit=1, skip=0)
    limit = ipb.ListInstallationsResponse(installation=one).ByteSize() + 50
    with pytest.raises(ResourceExhausted) as info:
        service.list_installations(**every, limit=0, skip=0, max_bytes=limit)
    assert info.value.reason == "RESPONSE_TOO_LARGE" and "limit and skip" in info.value.message
    assert service.list_installations(**every, limit=1, skip=2, max_bytes=limit)
    assert MAX_LIST_RESPONSE_BYTES < GRPC_DEFAULT_MAX_RECEIVE
