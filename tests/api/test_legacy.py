"""Porter's legacy API (porter.v1alpha1.Porter), wire-compatible for the Porter operator.

The contract table below is written from Porter's own wire contract (the project's Porter notes,
"The legacy wire contract"), not from our .proto files: it is compared with what the server serves
through reflection, so any drift in a name, number, type, label or JSON name fails here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.struct_pb2 import NULL_VALUE
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from installation.v1alpha1 import installation_pb2 as ipb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle import store
from porter_bundle.api.server import RunningServer, start_server
from porter_bundle.api.servicers import LEGACY_SERVICE
from porter_bundle.config import Settings
from porter_bundle.service.runs import NewRun, OutputValue
from porter_bundle.status import ERROR_DOMAIN
from porter_bundle.store import Database, OutputRow, create_key_file
from porter_bundle.store.migrate import alembic_config
from tests.helpers import failure

# ---------------------------------------------------------------------------------------------
# The contract, from porter-facts.md.

F = descriptor_pb2.FieldDescriptorProto
STRING, INT64, BOOL, MESSAGE, ENUM = (
    F.TYPE_STRING,
    F.TYPE_INT64,
    F.TYPE_BOOL,
    F.TYPE_MESSAGE,
    F.TYPE_ENUM,
)
SINGLE, REPEATED = F.LABEL_OPTIONAL, F.LABEL_REPEATED
TS = ".google.protobuf.Timestamp"
PKG = ".installation.v1alpha1."

# message -> [(field name, number, type, type_name, label, proto3 optional, json_name)]
CONTRACT: dict[str, list[tuple[str, int, int, str, int, bool, str]]] = {
    "Bundle": [
        ("repository", 1, STRING, "", SINGLE, False, "repository"),
        ("version", 2, STRING, "", SINGLE, False, "version"),
    ],
    "InstallationStatus": [
        ("runId", 1, STRING, "", SINGLE, False, "runId"),
        ("action", 2, STRING, "", SINGLE, False, "action"),
        ("resultId", 3, STRING, "", SINGLE, False, "resultId"),
        ("resultStatus", 4, STRING, "", SINGLE, False, "resultStatus"),
        ("created", 5, MESSAGE, TS, SINGLE, False, "created"),
        ("modified", 6, MESSAGE, TS, SINGLE, False, "modified"),
        ("installed", 7, MESSAGE, TS, SINGLE, False, "installed"),
        ("uninstalled", 8, MESSAGE, TS, SINGLE, False, "uninstalled"),
        ("bundleReference", 9, STRING, "", SINGLE, False, "bundleReference"),
        ("bundleVersion", 10, STRING, "", SINGLE, False, "bundleVersion"),
        ("bundleDigest", 11, STRING, "", SINGLE, False, "bundleDigest"),
    ],
    "Calculated": [
        ("displayInstallationState", 1, STRING, "", SINGLE, False, "displayInstallationState"),
        ("displayInstallationStatus", 2, STRING, "", SINGLE, False, "displayInstallationStatus"),
        (
            "resolvedParameters",
            3,
            ENUM,
            ".google.protobuf.NullValue",
            SINGLE,
            False,
            "resolvedParameters",
        ),
    ],
    "Installation": [
        ("id", 1, STRING, "", SINGLE, False, "id"),
        ("schemaType", 2, STRING, "", SINGLE, False, "schemaType"),
        ("schemaVersion", 3, STRING, "", SINGLE, False, "schemaVersion"),
        ("name", 4, STRING, "", SINGLE, False, "name"),
        ("namespace", 5, STRING, "", SINGLE, False, "namespace"),
        ("bundle", 6, MESSAGE, PKG + "Bundle", SINGLE, False, "bundle"),
        ("credentialSets", 7, STRING, "", REPEATED, False, "credentialSets"),
        ("parameterSets", 8, STRING, "", REPEATED, False, "parameterSets"),
        ("status", 9, MESSAGE, PKG + "InstallationStatus", SINGLE, False, "status"),
        ("calculated", 10, MESSAGE, PKG + "Calculated", SINGLE, False, "_calculated"),
    ],
    "ListInstallationsRequest": [
        ("name", 1, STRING, "", SINGLE, False, "name"),
        ("namespace", 2, STRING, "", SINGLE, True, "namespace"),
        ("limit", 3, INT64, "", SINGLE, True, "limit"),
        ("skip", 4, INT64, "", SINGLE, True, "skip"),
        (
            "labels",
            5,
            MESSAGE,
            PKG + "ListInstallationsRequest.LabelsEntry",
            REPEATED,
            False,
            "labels",
        ),
        ("allNamespaces", 6, BOOL, "", SINGLE, True, "allNamespaces"),
    ],
    "ListInstallationsResponse": [
        ("installation", 1, MESSAGE, PKG + "Installation", REPEATED, False, "installation"),
    ],
    "PorterValue": [
        ("name", 1, STRING, "", SINGLE, False, "name"),
        ("type", 2, STRING, "", SINGLE, False, "type"),
        ("sensitive", 3, BOOL, "", SINGLE, False, "sensitive"),
        ("value", 4, MESSAGE, ".google.protobuf.Value", SINGLE, False, "value"),
    ],
    "ListInstallationLatestOutputRequest": [
        ("name", 1, STRING, "", SINGLE, False, "name"),
        ("namespace", 2, STRING, "", SINGLE, True, "namespace"),
    ],
    "ListInstallationLatestOutputResponse": [
        ("outputs", 1, MESSAGE, PKG + "PorterValue", REPEATED, False, "outputs"),
    ],
}
RPCS = {
    "ListInstallations": (PKG + "ListInstallationsRequest", PKG + "ListInstallationsResponse"),
    "ListInstallationLatestOutputs": (
        PKG + "ListInstallationLatestOutputRequest",
        PKG + "ListInstallationLatestOutputResponse",
    ),
}


def served_files(
    channel: grpc.Channel, symbol: str
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    [found] = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)])
    )
    assert not found.HasField("error_response"), found.error_response
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    return {f.name: f for f in files}


def test_served_descriptors_match_porters_wire_contract(channel):
    files = served_files(channel, "porter.v1alpha1.Porter")
    service_file = files["porter/v1alpha1/porter.proto"]
    assert service_file.package == "porter.v1alpha1" and service_file.syntax == "proto3"
    assert "installation/v1alpha1/installation.proto" in service_file.dependency
    [service] = service_file.service
    assert service.name == "Porter"
    assert {
        m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
        for m in service.method
    } == {name: (req, resp, False, False) for name, (req, resp) in RPCS.items()}

    messages_file = served_files(channel, "installation.v1alpha1.PorterValue")[
        "installation/v1alpha1/installation.proto"
    ]
    assert messages_file.package == "installation.v1alpha1" and messages_file.syntax == "proto3"
    messages = {m.name: m for m in messages_file.message_type}
    assert set(messages) == set(CONTRACT), "exactly the messages of the contract"
    for name, expected in CONTRACT.items():
        msg = messages[name]
        got = [
            (f.name, f.number, f.type, f.type_name, f.label, f.proto3_optional, f.json_name)
            for f in msg.field
        ]
        assert got == expected, name
        for f in msg.field:
            # proto3 `optional` is a synthetic oneof named "_<field>", and nothing else is.
            if f.proto3_optional:
                assert msg.oneof_decl[f.oneof_index].name == "_" + f.name
            else:
                assert not f.HasField("oneof_index"), f"{name}.{f.name} is in a oneof"
    [labels_entry] = messages["ListInstallationsRequest"].nested_type
    assert labels_entry.name == "LabelsEntry" and labels_entry.options.map_entry
    assert [(f.name, f.number, f.type) for f in labels_entry.field] == [
        ("key", 1, STRING),
        ("value", 2, STRING),
    ]


def test_reflection_lists_and_health_covers_the_legacy_service(server, channel):
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    [listing] = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    assert LEGACY_SERVICE in {s.name for s in listing.list_services_response.service}
    health = health_pb2_grpc.HealthStub(channel)
    check = health_pb2.HealthCheckRequest(service="porter.v1alpha1.Porter")
    assert health.Check(check).status == health_pb2.HealthCheckResponse.SERVING
    asyncio.run_coroutine_threadsafe(
        server.running.health.enter_graceful_shutdown(), server.loop
    ).result(10)
    assert health.Check(check).status == health_pb2.HealthCheckResponse.NOT_SERVING


# ---------------------------------------------------------------------------------------------
# Helpers: installations through the v1 API, runs through the service layer.

NS, NAME = "dev", "mybuns"


@pytest.fixture
def legacy(channel: grpc.Channel) -> porter_pb2_grpc.PorterStub:
    return porter_pb2_grpc.PorterStub(channel)


def create(stub, namespace=NS, name=NAME, labels=None, **bundle):
    inst = Installation(
        namespace=namespace,
        name=name,
        labels=labels or {},
        bundle=BundleReference(
            repository="localhost:5000/mybuns", **(bundle or {"version": "0.1.2"})
        ),
        credential_sets=["creds"],
        parameter_sets=["params", "more-params"],
    )
    return stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation


def start_run(server, action, custom="", namespace=NS, name=NAME):
    run, _ = server.services.runs.create(
        namespace,
        name,
        NewRun(
            action=action,
            custom_action=custom,
            bundle_reference="localhost:5000/mybuns:v0.1.2",
            bundle_digest="sha256:" + "a" * 64,
            bundle_version="0.1.2",
        ),
    )
    return run


def record(server, action, state, outputs=(), custom="", namespace=NS, name=NAME):
    run = start_run(server, action, custom, namespace, name)
    server.services.runs.start(run.id)
    return server.services.runs.finish(run.id, state, "", outputs)


def latest(legacy, namespace=NS, name=NAME):
    return legacy.ListInstallationLatestOutputs(
        ipb.ListInstallationLatestOutputRequest(namespace=namespace, name=name)
    ).outputs


def as_tuples(values):
    return [
        (v.name, v.type, v.sensitive, v.value.string_value if v.HasField("value") else None)
        for v in values
    ]


def v1_latest(stub):
    resp = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME, run_id="latest")
    )
    return resp.run_id, [o.name for o in resp.outputs]


CONFIG = {"replicas": 3, "hosts": ["a.example.com", "b.example.com"], "tls": True}
INSTALL_OUTPUTS = [
    OutputValue("greeting", "Hello, World", type="string"),
    OutputValue("config", CONFIG, type="object"),
    OutputValue("password", "s3cret", type="string", sensitive=True),
    OutputValue("port", 8080, type="integer"),
]


@pytest.fixture
def installed_then_failed_upgrade(server, stub):
    """Install (outputs: string, object, sensitive, integer), then a failing upgrade (one new output)."""
    create(stub)
    install = record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED, INSTALL_OUTPUTS)
    upgrade = record(
        server,
        ACTION_UPGRADE,
        RUN_STATE_FAILED,
        [OutputValue("diagnostics", "disk full on /data", type="string")],
    )
    return install, upgrade


# ---------------------------------------------------------------------------------------------
# ListInstallationLatestOutputs


def test_latest_outputs_per_name_whatever_the_result_vs_v1_latest(
    stub, legacy, installed_then_failed_upgrade
):
    install, _upgrade = installed_then_failed_upgrade
    # Porter: per name, the most recent value, the failed upgrade's new output included;
    # strings as they are, everything else as compact JSON text; sensitive values withheld.
    assert as_tuples(latest(legacy)) == [
        ("config", "object", False, json.dumps(CONFIG, sort_keys=True, separators=(",", ":"))),
        ("diagnostics", "string", False, "disk full on /data"),
        ("greeting", "string", False, "Hello, World"),
        ("password", "string", True, None),
        ("port", "integer", False, "8080"),
    ]
    [config] = [v for v in latest(legacy) if v.name == "config"]
    assert json.loads(config.value.string_value) == CONFIG
    assert config.value.WhichOneof("kind") == "string_value"
    # v1's "latest" is the last successful run: the install, without the failed run's output.
    assert v1_latest(stub) == (install.id, ["config", "greeting", "password", "port"])


def test_latest_outputs_follow_the_newest_run_per_name(
    server, legacy, installed_then_failed_upgrade
):
    record(
        server,
        ACTION_UPGRADE,
        RUN_STATE_SUCCEEDED,
        [OutputValue("greeting", "Hello again", type="string"), OutputValue("port", 9090)],
    )
    got = {v.name: v.value.string_value for v in latest(legacy)}
    assert got == {
        "config": json.dumps(CONFIG, sort_keys=True, separators=(",", ":")),
        "diagnostics": "disk full on /data",  # still the failed upgrade's
        "greeting": "Hello again",
        "password": "",
        "port": "9090",
    }


def test_latest_outputs_other_json_values_render_as_porter_does(server, stub, legacy):
    create(stub)
    record(
        server,
        ACTION_INSTALL,
        RUN_STATE_SUCCEEDED,
        [
            OutputValue("flag", True, type="boolean"),
            OutputValue("ratio", 0.5, type="number"),
            OutputValue("list", [1, "two", None], type="array"),
            OutputValue("quoted", '{"looks": "like json"}', type="string"),
            OutputValue("empty", "", type="string"),
            OutputValue("unicode", "grüße ✓", type="string"),
        ],
    )
    assert {v.name: v.value.string_value for v in latest(legacy)} == {
        "empty": "",
        "flag": "true",
        "list": '[1,"two",null]',
        "quoted": '{"looks": "like json"}',
        "ratio": "0.5",
        "unicode": "grüße ✓",
    }
    assert all(v.HasField("value") for v in latest(legacy))


@pytest.fixture
def revealing_target(server) -> Iterator[str]:
    """A second server over the same services, started with --legacy-reveal-sensitive."""
    settings = Settings(address="127.0.0.1:0", legacy_reveal_sensitive=True)
    running: RunningServer = asyncio.run_coroutine_threadsafe(
        start_server(settings, server.services, server.services.blocking.pool), server.loop
    ).result(30)
    yield f"127.0.0.1:{running.port}"
    asyncio.run_coroutine_threadsafe(running.stop(0), server.loop).result(30)


def test_reveal_setting_hands_out_sensitive_values(
    legacy, installed_then_failed_upgrade, revealing_target
):
    [hidden] = [v for v in latest(legacy) if v.name == "password"]
    assert hidden.sensitive and not hidden.HasField("value")
    with grpc.insecure_channel(revealing_target) as ch:
        revealed = latest(porter_pb2_grpc.PorterStub(ch))
    [password] = [v for v in revealed if v.name == "password"]
    assert (password.sensitive, password.type, password.value.string_value) == (
        True,
        "string",
        "s3cret",
    )
    # Everything else is the same either way.
    assert [v for v in as_tuples(revealed) if v[0] != "password"] == [
        v for v in as_tuples(latest(legacy)) if v[0] != "password"
    ]


def test_no_runs_or_no_outputs_answer_an_empty_list(server, stub, legacy):
    create(stub)
    assert list(latest(legacy)) == []
    record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    assert list(latest(legacy)) == []


def test_global_namespace_when_namespace_unset(server, stub, legacy):
    create(stub, namespace="")
    record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED, [OutputValue("o", "global")], namespace="")
    create(stub)  # same name in "dev", no outputs
    unset = legacy.ListInstallationLatestOutputs(ipb.ListInstallationLatestOutputRequest(name=NAME))
    assert as_tuples(unset.outputs) == [("o", "", False, "global")]
    assert as_tuples(latest(legacy, namespace="")) == [("o", "", False, "global")]
    assert list(latest(legacy, namespace=NS)) == []


def test_missing_installation_is_not_found_with_error_info(legacy):
    f = failure(
        legacy.ListInstallationLatestOutputs,
        ipb.ListInstallationLatestOutputRequest(name="missing", namespace="dev"),
    )
    assert f.code == grpc.StatusCode.NOT_FOUND
    assert (f.domain, f.reason) == (ERROR_DOMAIN, "INSTALLATION_NOT_FOUND")
    assert f.metadata == {"namespace": "dev", "name": "missing"}


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"namespace": "dev"}, "name"),
        ({"name": "bad name!"}, "name"),
        ({"name": "ok", "namespace": "no/such"}, "namespace"),
    ],
)
def test_bad_output_requests_are_invalid_argument(legacy, request_fields, field):
    f = failure(
        legacy.ListInstallationLatestOutputs,
        ipb.ListInstallationLatestOutputRequest(**request_fields),
    )
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and field in f.violations
    assert f.domain == ERROR_DOMAIN


def test_a_late_writer_never_moves_a_latest_pointer_back(server, installed_then_failed_upgrade):
    install, _upgrade = installed_then_failed_upgrade
    st: Database = server.store
    with st.read() as conn:
        inst_id = store.get_installation_pointers(conn, NS, NAME)[0]
    with st.write() as s:
        old = OutputRow(
            run_id=install.id, name="diagnostics", sensitive=False, value='"old"', doc=b""
        )
        store.add_outputs(s, inst_id, [old])
    with st.read() as conn:
        got = [json.loads(r.value_json) for r in store.list_latest_outputs(conn, inst_id)]
    assert "disk full on /data" in got and "old" not in got


def test_latest_outputs_query_reads_by_key(server, stub, legacy, installed_then_failed_upgrade):
    st: Database = server.store
    if not st.is_sqlite:
        pytest.skip("query plan check is for SQLite")
    assert latest(legacy)
    compiled = st._queries._compiled["outputs.latest"]
    with st.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + compiled.sql, compiled.args({"inst": "x"})
        ).all()
    details = " | ".join(str(row[-1]) for row in plan)
    # One range read of latest_outputs by its primary key, one key lookup per output; no scan
    # and no sort (the key already orders by name).
    assert "SCAN" not in details and "TEMP B-TREE" not in details, details
    assert re.search(r"SEARCH latest_outputs USING .*\(installation_id=\?\)", details), details
    assert "SEARCH outputs USING INDEX sqlite_autoindex_outputs_1 (run_id=? AND name=?)" in details


def test_migration_backfills_latest_outputs(server, legacy, installed_then_failed_upgrade):
    from alembic import command

    before = as_tuples(latest(legacy))
    cfg = alembic_config(server.store.engine)
    command.downgrade(cfg, "0002")
    command.upgrade(cfg, "head")
    assert as_tuples(latest(legacy)) == before


def test_deleting_an_installation_removes_its_latest_outputs(
    stub, legacy, installed_then_failed_upgrade
):
    stub.DeleteInstallation(pb.DeleteInstallationRequest(namespace=NS, name=NAME, force=True))
    create(stub)
    assert list(latest(legacy)) == []


# ---------------------------------------------------------------------------------------------
# ListInstallations


def list_insts(legacy, **fields):
    return list(legacy.ListInstallations(ipb.ListInstallationsRequest(**fields)).installation)


def test_list_maps_every_field(server, stub, legacy, installed_then_failed_upgrade):
    _install, upgrade = installed_then_failed_upgrade
    v1 = stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name=NAME)).installation
    [got] = list_insts(legacy, namespace=NS)
    expected = ipb.Installation(
        id=v1.id,
        schemaType="Installation",
        schemaVersion="1.0.2",
        name=NAME,
        namespace=NS,
        bundle=ipb.Bundle(repository="localhost:5000/mybuns", version="0.1.2"),
        credentialSets=["creds"],
        parameterSets=["params", "more-params"],
        status=ipb.InstallationStatus(
            runId=upgrade.id,
            action="upgrade",
            resultId=upgrade.id,
            resultStatus="failed",
            created=v1.create_time,
            modified=v1.update_time,
            installed=v1.status.install_time,
            bundleReference="localhost:5000/mybuns:v0.1.2",
            bundleVersion="0.1.2",
            bundleDigest="sha256:" + "a" * 64,
        ),
        calculated=ipb.Calculated(
            displayInstallationState="installed",
            displayInstallationStatus="failed",
            resolvedParameters=NULL_VALUE,
        ),
    )
    assert got == expected
    assert not got.status.HasField("uninstalled") and got.status.HasField("installed")
    # Porter's JSON names, "_calculated" included.
    as_json = json_format.MessageToDict(got)
    assert as_json["_calculated"]["displayInstallationState"] == "installed"
    assert as_json["status"]["resultStatus"] == "failed" and "credentialSets" in as_json


def test_list_of_a_never_run_installation(stub, legacy):
    v1 = create(stub, tag="latest")
    [got] = list_insts(legacy, namespace=NS)
    assert got.bundle == ipb.Bundle(repository="localhost:5000/mybuns", version="latest")
    assert got.status == ipb.InstallationStatus(created=v1.create_time, modified=v1.update_time)
    assert got.calculated == ipb.Calculated(
        displayInstallationState="defined", displayInstallationStatus=""
    )


def test_digest_pinned_bundle_has_no_version(stub, legacy):
    create(stub, digest="sha256:" + "b" * 64)
    [got] = list_insts(legacy, namespace=NS)
    assert got.bundle == ipb.Bundle(repository="localhost:5000/mybuns", version="")


def display(legacy):
    [got] = list_insts(legacy, namespace=NS)
    return (
        got.status.action,
        got.status.resultStatus,
        got.calculated.displayInstallationState,
        got.calculated.displayInstallationStatus,
    )


def test_display_state_and_status_follow_porter(server, stub, legacy):
    create(stub)
    runs = server.services.runs
    run = start_run(server, ACTION_INSTALL)
    assert display(legacy) == ("install", "pending", "defined", "")
    runs.start(run.id)
    assert display(legacy) == ("install", "running", "defined", "installing")
    runs.finish(run.id, RUN_STATE_FAILED, "boom")
    assert display(legacy) == ("install", "failed", "defined", "failed")
    record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    assert display(legacy) == ("install", "succeeded", "installed", "succeeded")

    run = start_run(server, ACTION_UPGRADE)
    runs.start(run.id)
    assert display(legacy) == ("upgrade", "running", "installed", "upgrading")
    runs.finish(run.id, RUN_STATE_CANCELED, "canceled")
    assert display(legacy) == ("upgrade", "canceled", "installed", "")

    run = start_run(server, ACTION_INVOKE, custom="status")
    runs.start(run.id)
    assert display(legacy) == ("status", "running", "installed", "running status")
    runs.finish(run.id, RUN_STATE_SUCCEEDED)

    run = start_run(server, ACTION_UNINSTALL)
    runs.start(run.id)
    assert display(legacy) == ("uninstall", "running", "installed", "uninstalling")
    runs.finish(run.id, RUN_STATE_SUCCEEDED)
    assert display(legacy) == ("uninstall", "succeeded", "uninstalled", "succeeded")
    [got] = list_insts(legacy, namespace=NS)
    assert got.status.HasField("uninstalled")

    record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)  # reinstalled
    assert display(legacy) == ("install", "succeeded", "installed", "succeeded")


@pytest.fixture
def porters_installations(stub):
    """Porter's own ListInstallations test data (pkg/porter/list_test.go), plus labels."""
    made = [
        ("", "shared-mysql", {}),
        ("dev", "carolyn-wordpress", {"team": "web", "tier": "prod"}),
        ("dev", "vaughn-wordpress", {"team": "web"}),
        ("test", "staging-wordpress", {"team": "web", "tier": "staging"}),
        ("test", "iat-wordpress", {}),
        ("test", "shared-mysql", {"team": "db"}),
    ]
    for namespace, name, labels in made:
        create(stub, namespace=namespace, name=name, labels=labels)


def addresses(found):
    return [(i.namespace, i.name) for i in found]


def test_list_filters_as_porter(legacy, porters_installations):
    assert addresses(list_insts(legacy)) == [("", "shared-mysql")]  # unset namespace: global
    assert addresses(list_insts(legacy, namespace="")) == [("", "shared-mysql")]
    assert sorted(addresses(list_insts(legacy, namespace="dev"))) == [
        ("dev", "carolyn-wordpress"),
        ("dev", "vaughn-wordpress"),
    ]
    assert len(list_insts(legacy, namespace="test")) == 3
    assert len(list_insts(legacy, allNamespaces=True)) == 6
    assert len(list_insts(legacy, namespace="*")) == 6
    assert len(list_insts(legacy, namespace="dev", allNamespaces=True)) == 6
    assert len(list_insts(legacy, allNamespaces=False)) == 1
    assert sorted(addresses(list_insts(legacy, allNamespaces=True, name="mysql"))) == [
        ("", "shared-mysql"),
        ("test", "shared-mysql"),
    ]
    assert len(list_insts(legacy, allNamespaces=True, name="wordpress")) == 4
    assert list_insts(legacy, allNamespaces=True, name="WordPress") == []  # case-sensitive
    assert sorted(addresses(list_insts(legacy, allNamespaces=True, labels={"team": "web"}))) == [
        ("dev", "carolyn-wordpress"),
        ("dev", "vaughn-wordpress"),
        ("test", "staging-wordpress"),
    ]
    assert addresses(
        list_insts(legacy, allNamespaces=True, labels={"team": "web", "tier": "prod"})
    ) == [("dev", "carolyn-wordpress")]
    assert list_insts(legacy, namespace="nowhere") == []


def test_list_order_skip_and_limit_as_porter(server, legacy, porters_installations):
    # Store order (namespace, name), then skip and limit, then newest modification first.
    everything = list_insts(legacy, allNamespaces=True)
    assert addresses(everything) == [
        ("test", "shared-mysql"),
        ("test", "iat-wordpress"),
        ("test", "staging-wordpress"),
        ("dev", "vaughn-wordpress"),
        ("dev", "carolyn-wordpress"),
        ("", "shared-mysql"),
    ]
    assert addresses(list_insts(legacy, allNamespaces=True, skip=1, limit=2)) == [
        ("dev", "vaughn-wordpress"),
        ("dev", "carolyn-wordpress"),
    ]
    assert addresses(list_insts(legacy, allNamespaces=True, skip=4, limit=0)) == [
        ("test", "shared-mysql"),
        ("test", "staging-wordpress"),
    ]
    assert list_insts(legacy, allNamespaces=True, skip=6) == []
    assert len(list_insts(legacy, allNamespaces=True, limit=0)) == 6
    assert len(list_insts(legacy, allNamespaces=True, limit=2**62)) == 6
    assert list_insts(legacy, allNamespaces=True, skip=2**62) == []
    # A run changes an installation: it moves to the front.
    record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED, namespace="dev", name="carolyn-wordpress")
    assert addresses(list_insts(legacy, allNamespaces=True))[0] == ("dev", "carolyn-wordpress")
    assert addresses(list_insts(legacy, namespace="dev")) == [
        ("dev", "carolyn-wordpress"),
        ("dev", "vaughn-wordpress"),
    ]


def test_empty_list(legacy):
    assert list_insts(legacy, allNamespaces=True) == []


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"skip": -5}, "skip"),
        ({"namespace": "no/such"}, "namespace"),
        ({"namespace": "-dev"}, "namespace"),
        ({"name": "a b"}, "name"),
        ({"name": "x" * 254}, "name"),
        ({"labels": {"bad key!": "x"}}, "labels['bad key!']"),
        ({"labels": {"team": "v" * 257}}, "labels['team']"),
    ],
)
def test_bad_filters_are_invalid_argument(legacy, request_fields, field):
    f = failure(legacy.ListInstallations, ipb.ListInstallationsRequest(**request_fields))
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT, f
    assert field in f.violations, f.violations
    assert f.domain == ERROR_DOMAIN


# ---------------------------------------------------------------------------------------------
# The setting, end to end: flag and environment variable of a real server process.

BIN = Path(sys.executable).with_name("porter-bundle")


def test_cli_flag_parses():
    from porter_bundle.cli.serve import serve_flags

    assert serve_flags(["--legacy-reveal-sensitive"])["legacy_reveal_sensitive"] is True
    assert serve_flags(["--no-legacy-reveal-sensitive"])["legacy_reveal_sensitive"] is False
    assert "legacy_reveal_sensitive" not in serve_flags([])


@pytest.mark.slow
@pytest.mark.parametrize(("env_value", "revealed"), [("true", True), ("", False)])
def test_reveal_environment_variable_reaches_the_server(tmp_path, env_value, revealed):
    db = tmp_path / "db.sqlite"
    url = f"sqlite:///{db}"
    # The key file where the server looks by default, so it decrypts what this store wrote.
    seeded = Database(url, keyring=create_key_file(Path(f"{db}.key")))
    seeded.migrate()
    from porter_bundle.service import Services

    services = Services.create(seeded)
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository="r.example.com/b", tag="v1")
    )
    services.installations.create(inst)
    run, _ = services.runs.create(NS, NAME, NewRun(action=ACTION_INSTALL))
    services.runs.start(run.id)
    services.runs.finish(
        run.id, RUN_STATE_SUCCEEDED, "", [OutputValue("token", "t0ken", "string", True)]
    )
    seeded.close()
    env = {
        **os.environ,
        "PORTER_BUNDLE_ADDRESS": "127.0.0.1:0",
        "PORTER_BUNDLE_LEGACY_REVEAL_SENSITIVE": env_value,
    }
    proc = subprocess.Popen(
        [str(BIN), "serve", "--database", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"listening on port (\d+)", proc.stdout.readline())
        assert match, proc.stderr.read() if proc.poll() is not None else "no port"
        with grpc.insecure_channel(f"127.0.0.1:{match.group(1)}") as ch:
            [token] = latest(porter_pb2_grpc.PorterStub(ch))
            # The v1 API never reveals, whatever the legacy setting.
            [v1] = (
                porter_bundle_pb2_grpc.PorterBundleStub(ch)
                .ListInstallationRunOutputs(
                    pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME, run_id="latest")
                )
                .outputs
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert token.sensitive and token.HasField("value") == revealed
    assert token.value.string_value == ("t0ken" if revealed else "")
    assert v1.sensitive and not v1.HasField("value")
