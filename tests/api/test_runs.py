"""Runs, outputs and the "latest" alias, through real stubs. Runs are recorded via the service layer."""

from __future__ import annotations

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_DEFINED,
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    BundleReference,
    Installation,
)
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
)
from porter_bundle.service.runs import NewRun, OutputValue
from tests.helpers import failure

NS, NAME = "dev", "mybuns"


@pytest.fixture
def installation(stub):
    inst = Installation(
        namespace=NS,
        name=NAME,
        bundle=BundleReference(repository="localhost:5000/mybuns", version="0.1.2"),
    )
    return stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation


def record(server, action, state, outputs=(), custom="", parameters=None, sensitive=frozenset()):
    runs = server.services.runs
    run, created = runs.create(
        NS,
        NAME,
        NewRun(
            action=action,
            custom_action=custom,
            bundle_reference="localhost:5000/mybuns:v0.1.2",
            bundle_digest="sha256:" + "a" * 64,
            bundle_version="0.1.2",
            parameters=parameters or {},
            sensitive_parameters=frozenset(sensitive),
            credential_sets=["creds"],
            parameter_sets=["params"],
        ),
    )
    assert created
    runs.start(run.id)
    return runs.finish(run.id, state, "done" if state == RUN_STATE_SUCCEEDED else "boom", outputs)


def get_inst(stub):
    return stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name=NAME)).installation


def outputs(stub, run_id="latest", any_result=False):
    return stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(
            namespace=NS, name=NAME, run_id=run_id, any_result=any_result
        )
    )


def test_run_lifecycle_is_visible_and_updates_status(server, stub, installation):
    assert installation.status.state == INSTALLATION_STATE_DEFINED
    runs = server.services.runs
    run, _ = runs.create(NS, NAME, NewRun(action=ACTION_INSTALL, bundle_reference="r:v1"))
    got = stub.GetInstallationRun(
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id=run.id)
    ).run
    assert got.state == RUN_STATE_PENDING and got.installation == NAME and got.namespace == NS
    assert not got.HasField("start_time")
    status = get_inst(stub).status
    assert (status.run_id, status.action, status.run_state) == (
        run.id,
        "install",
        RUN_STATE_PENDING,
    )

    runs.start(run.id)
    got = stub.GetInstallationRun(
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id=run.id)
    ).run
    assert got.state == RUN_STATE_RUNNING and got.HasField("start_time")

    runs.finish(run.id, RUN_STATE_SUCCEEDED, "installed")
    got = stub.GetInstallationRun(
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id=run.id)
    ).run
    assert (
        got.state == RUN_STATE_SUCCEEDED
        and got.message == "installed"
        and got.HasField("complete_time")
    )
    status = get_inst(stub).status
    assert status.state == INSTALLATION_STATE_INSTALLED
    assert status.run_state == RUN_STATE_SUCCEEDED and status.last_succeeded_run_id == run.id
    assert status.HasField("install_time") and not status.HasField("uninstall_time")


def test_status_follows_porter_rules(server, stub, installation):
    record(server, ACTION_INSTALL, RUN_STATE_FAILED)
    assert get_inst(stub).status.state == INSTALLATION_STATE_DEFINED
    record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    assert get_inst(stub).status.state == INSTALLATION_STATE_INSTALLED
    record(server, ACTION_INVOKE, RUN_STATE_SUCCEEDED, custom="status")
    st = get_inst(stub).status
    assert st.state == INSTALLATION_STATE_INSTALLED and st.action == "status"
    record(server, ACTION_UPGRADE, RUN_STATE_FAILED)
    assert get_inst(stub).status.state == INSTALLATION_STATE_INSTALLED
    record(server, ACTION_UNINSTALL, RUN_STATE_SUCCEEDED)
    st = get_inst(stub).status
    assert st.state == INSTALLATION_STATE_UNINSTALLED and st.HasField("uninstall_time")


def test_runs_list_newest_first_with_paging(server, stub, installation):
    ids = [record(server, ACTION_INVOKE, RUN_STATE_SUCCEEDED, custom="status").id for _ in range(7)]
    seen, token = [], ""
    while True:
        resp = stub.ListInstallationRuns(
            pb.ListInstallationRunsRequest(namespace=NS, name=NAME, page_size=3, page_token=token)
        )
        assert resp.total_size == 7
        seen += [r.id for r in resp.runs]
        token = resp.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    skipped = stub.ListInstallationRuns(
        pb.ListInstallationRunsRequest(namespace=NS, name=NAME, skip=5)
    )
    assert [r.id for r in skipped.runs] == list(reversed(ids))[5:]


def test_run_parameters_withhold_sensitive_values(server, stub, installation):
    run = record(
        server,
        ACTION_INSTALL,
        RUN_STATE_SUCCEEDED,
        parameters={"password": "hunter2-secret", "replicas": 3, "name": "web"},
        sensitive={"password"},
    )
    got = stub.GetInstallationRun(
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id=run.id)
    ).run
    assert dict(got.parameters) == {"replicas": 3.0, "name": "web"}
    assert list(got.sensitive_parameters) == ["password"]
    assert list(got.credential_sets) == ["creds"] and list(got.parameter_sets) == ["params"]
    listed = stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace=NS, name=NAME))
    assert b"hunter2-secret" not in listed.SerializeToString()
    assert b"hunter2-secret" not in got.SerializeToString()
    # The executor still gets every value.
    assert server.services.runs.run_parameters(run.id)["password"] == "hunter2-secret"


def test_outputs_typed_and_sensitive_withheld(server, stub, installation):
    run = record(
        server,
        ACTION_INSTALL,
        RUN_STATE_SUCCEEDED,
        outputs=[
            OutputValue("conn", "postgres://db", "string"),
            OutputValue("config", {"replicas": 2, "tags": ["a"]}, "object"),
            OutputValue("port", 5432, "integer"),
            OutputValue("password", "s3cr3t-output", "string", sensitive=True),
        ],
    )
    resp = outputs(stub, run.id)
    assert resp.run_id == run.id and resp.run_state == RUN_STATE_SUCCEEDED
    by_name = {o.name: o for o in resp.outputs}
    assert [o.name for o in resp.outputs] == ["config", "conn", "password", "port"]
    assert by_name["conn"].value.string_value == "postgres://db"
    assert by_name["port"].value.number_value == 5432
    assert by_name["config"].value.struct_value.fields["replicas"].number_value == 2
    secret = by_name["password"]
    assert secret.sensitive and not secret.HasField("value")
    assert secret.digest.startswith("sha256:") and secret.run_id == run.id
    assert b"s3cr3t-output" not in resp.SerializeToString()


def test_latest_resolves_to_last_successful_run(server, stub, installation):
    ok = record(
        server, ACTION_INSTALL, RUN_STATE_SUCCEEDED, outputs=[OutputValue("v", "one", "string")]
    )
    failed = record(
        server, ACTION_UPGRADE, RUN_STATE_FAILED, outputs=[OutputValue("v", "two", "string")]
    )

    latest = outputs(stub)
    assert latest.run_id == ok.id and latest.run_state == RUN_STATE_SUCCEEDED
    assert [o.value.string_value for o in latest.outputs] == ["one"]
    explicit = outputs(stub, "latest")
    assert explicit.run_id == ok.id

    wide = outputs(stub, any_result=True)
    assert wide.run_id == failed.id and wide.run_state == RUN_STATE_FAILED
    assert [o.value.string_value for o in wide.outputs] == ["two"]

    run = stub.GetInstallationRun(
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id="latest")
    ).run
    assert run.id == ok.id


def test_latest_with_no_runs_is_not_found_saying_why(server, stub, installation):
    f = failure(
        stub.ListInstallationRunOutputs,
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME),
    )
    assert f.code == grpc.StatusCode.NOT_FOUND and f.reason == "NO_LATEST_RUN"
    assert "no successful run" in f.message
    record(server, ACTION_INSTALL, RUN_STATE_FAILED)
    f = failure(
        stub.ListInstallationRunOutputs,
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME),
    )
    assert f.code == grpc.StatusCode.NOT_FOUND and f.reason == "NO_LATEST_RUN"
    wide = outputs(stub, any_result=True)
    assert wide.run_state == RUN_STATE_FAILED and list(wide.outputs) == []


def test_active_runs_are_not_latest(server, stub, installation):
    ok = record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    server.services.runs.create(NS, NAME, NewRun(action=ACTION_UPGRADE))
    assert outputs(stub, any_result=True).run_id == ok.id


def test_run_errors(server, stub, installation):
    f = failure(
        stub.GetInstallationRun,
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id="nope"),
    )
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and "run_id" in f.violations
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    f = failure(
        stub.GetInstallationRun,
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id=missing),
    )
    assert f.code == grpc.StatusCode.NOT_FOUND and f.reason == "RUN_NOT_FOUND"
    f = failure(
        stub.ListInstallationRunOutputs,
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME, run_id=missing),
    )
    assert f.code == grpc.StatusCode.NOT_FOUND and f.reason == "RUN_NOT_FOUND"
    f = failure(
        stub.ListInstallationRuns, pb.ListInstallationRunsRequest(namespace=NS, name="other")
    )
    assert f.code == grpc.StatusCode.NOT_FOUND and f.reason == "INSTALLATION_NOT_FOUND"
    f = failure(
        stub.ListInstallationRuns, pb.ListInstallationRunsRequest(namespace=NS, name="bad name!")
    )
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and "name" in f.violations
    # A run of another installation is not reachable through this one.
    other = Installation(
        namespace=NS, name="other", bundle=BundleReference(repository="r/x", tag="v1")
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=other))
    run = record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    f = failure(
        stub.GetInstallationRun,
        pb.GetInstallationRunRequest(namespace=NS, name="other", run_id=run.id),
    )
    assert f.code == grpc.StatusCode.NOT_FOUND


def test_request_id_makes_run_creation_idempotent(server, installation):
    runs = server.services.runs
    first, created = runs.create(NS, NAME, NewRun(action=ACTION_INSTALL, request_id="req-1"))
    again, created_again = runs.create(NS, NAME, NewRun(action=ACTION_INSTALL, request_id="req-1"))
    assert created and not created_again and again.id == first.id
    runs.start(first.id)
    runs.finish(first.id, RUN_STATE_SUCCEEDED)
    other, created_other = runs.create(NS, NAME, NewRun(action=ACTION_UPGRADE, request_id="req-2"))
    assert created_other and other.id != first.id


def test_one_active_run_per_installation(server, installation):
    from porter_bundle.errors import Aborted

    runs = server.services.runs
    first, _ = runs.create(NS, NAME, NewRun(action=ACTION_INSTALL))
    with pytest.raises(Aborted) as err:
        runs.create(NS, NAME, NewRun(action=ACTION_INSTALL))
    assert err.value.reason == "RUN_IN_PROGRESS" and err.value.metadata["run_id"] == first.id
    runs.start(first.id)
    with pytest.raises(Aborted):
        runs.create(NS, NAME, NewRun(action=ACTION_UPGRADE))
    runs.finish(first.id, RUN_STATE_FAILED, "boom")
    second, created = runs.create(NS, NAME, NewRun(action=ACTION_INSTALL))
    assert created and second.id != first.id


def test_finishing_twice_is_refused(server, installation):
    run = record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    from porter_bundle.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition):
        server.services.runs.finish(run.id, RUN_STATE_FAILED)


def test_deleting_installation_removes_runs_and_outputs(server, stub, store, installation):
    record(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED, outputs=[OutputValue("v", "x", "string")])
    record(server, ACTION_UNINSTALL, RUN_STATE_SUCCEEDED, outputs=[OutputValue("v", "y", "string")])
    stub.DeleteInstallation(pb.DeleteInstallationRequest(namespace=NS, name=NAME))
    with store.engine.connect() as conn:
        counts = [
            conn.exec_driver_sql(f"select count(*) from {t}").scalar_one()
            for t in ("runs", "outputs")
        ]
    assert counts == [0, 0]
