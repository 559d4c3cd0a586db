"""ExecuteAction, CancelRun and run logs through the real server, with a fake executor.

Everything above the executor is real: server, stubs, services, SQLite. The real
container executor has its own tests against Podman (tests/executor/).
"""

from __future__ import annotations

import json

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    BundleReference,
    Installation,
)
from porter.bundle.v1.run_pb2 import (
    ACTION_INVOKE,
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
)
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
)
from porter_bundle.executor import ContainerResult
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from porter_bundle.service.sources import DirectorySecretStore
from tests.fake_executor import FakeExecutor
from tests.helpers import cnab_validator, ended_run, failure
from tests.service.action_bundle import BUNDLE, GOOD_OUTPUTS, NAME, NS, REF, src


@pytest.fixture
def fake() -> FakeExecutor:
    fake = FakeExecutor()
    fake.behaviour = lambda spec: ContainerResult(exit_code=0, outputs=GOOD_OUTPUTS, logs=b"done\n")
    return fake


@pytest.fixture
def services(store, fake, tmp_path) -> Services:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token-secret").write_text("tok-from-store")
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
        secrets=DirectorySecretStore(secrets),
    )


@pytest.fixture
def app(stub):
    stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(BUNDLE)))
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS,
                name="creds",
                credentials=[
                    NamedValueSource(name="token", source=src(value="tok-literal")),
                    NamedValueSource(name="kubeconfig", source=src(command="printf 'kube: cfg'")),
                ],
            )
        )
    )
    stub.CreateParameterSet(
        pb.CreateParameterSetRequest(
            parameter_set=ParameterSet(
                namespace=NS,
                name="params",
                parameters=[
                    NamedValueSource(name="level", source=src(value="7")),
                    NamedValueSource(name="color", source=src(value="red")),
                    NamedValueSource(name="password", source=src(value="pw-secret-1")),
                ],
            )
        )
    )
    inst = Installation(
        namespace=NS,
        name=NAME,
        bundle=BundleReference(repository="localhost:5000/app", version="1.0.0"),
        credential_sets=["creds"],
        parameter_sets=["params"],
    )
    inst.parameters.update({"name": "web"})
    return stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation


def execute(stub, action, **kw):
    params = kw.pop("parameters", None)
    req = pb.ExecuteActionRequest(namespace=NS, name=NAME, action=action, **kw)
    if params:
        req.parameters.update(params)
    return stub.ExecuteAction(req).run


def wait_final(stub, run_id, timeout=20.0):
    return ended_run(stub, NS, NAME, run_id, timeout=timeout)


def test_install_runs_with_the_cnab_contract(stub, app, fake):
    run = execute(stub, "install")
    assert run.state == RUN_STATE_PENDING
    done = wait_final(stub, run.id)
    assert done.state == RUN_STATE_SUCCEEDED, done.message
    [spec] = fake.specs
    env, files = dict(spec.env), dict(spec.files)
    assert env["CNAB_ACTION"] == "install" and env["CNAB_INSTALLATION_NAME"] == NAME
    assert env["CNAB_BUNDLE_NAME"] == "app" and env["CNAB_BUNDLE_VERSION"] == "1.0.0"
    assert env["CNAB_REVISION"] == run.id and env["PORTER_INSTALLATION_NAMESPACE"] == NS
    assert env["PORTER_INSTALLATION_ID"] == app.id
    assert env["LEVEL"] == "7" and env["PASSWORD"] == "pw-secret-1"
    assert env["CNAB_P_NAME"] == "web" and files["/cnab/app/color.txt"] == b"red"
    assert env["TOKEN"] == "tok-literal" and files["/home/nonroot/.kube/config"] == b"kube: cfg"
    assert json.loads(files["/cnab/bundle.json"]) == BUNDLE
    claim = json.loads(files["/cnab/claim.json"])
    assert (
        claim["action"] == "install"
        and claim["installation"] == NAME
        and claim["revision"] == run.id
    )
    cnab_validator("claim.schema.json").validate(claim)
    # The container's claim is the recorded one, with every value the run uses.
    served = json.loads(stub.GetClaim(pb.GetClaimRequest(claim_id=run.id)).claim.claim_json)
    assert claim["parameters"]["password"] == "pw-secret-1"
    assert "password" not in served["parameters"] and "pw-secret-1" not in json.dumps(served)
    assert served["parameters"]["level"] == 7 and isinstance(served["parameters"]["level"], int)
    assert served["custom"]["sh.porter-bundle"]["sensitiveParameters"] == ["password"]
    assert {k: v for k, v in claim.items() if k not in ("parameters", "custom")} == {
        k: v for k, v in served.items() if k not in ("parameters", "custom")
    }
    assert claim["bundle"] == BUNDLE and "custom" not in claim
    assert spec.image == "localhost/app-installer:v1" and spec.network is None

    inst = stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name=NAME)).installation
    assert inst.status.state == INSTALLATION_STATE_INSTALLED and inst.status.run_id == run.id
    assert done.bundle_reference == REF and done.bundle_digest.startswith("sha256:")
    assert list(done.sensitive_parameters) == ["password"] and "password" not in done.parameters
    assert done.parameters["level"] == 7

    outs = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME)
    )
    by = {o.name: o for o in outs.outputs}
    assert (
        by["conn"].value.string_value == "postgres://db" and by["port"].value.number_value == 5432
    )
    assert by["secret"].sensitive and not by["secret"].HasField("value")
    assert by["defaulted"].value.string_value == "fallback"
    logs = stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name=NAME, run_id=run.id)
    )
    assert logs.logs == "running install\ndone\n" and logs.run_state == RUN_STATE_SUCCEEDED
    everything = b"".join(
        r.SerializeToString()
        for r in (
            done,
            outs,
            stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace=NS, name=NAME)),
        )
    )
    assert b"pw-secret-1" not in everything and b"out-secret-42" not in everything


def test_parameter_precedence(stub, app, fake, tmp_path):
    inst = Installation(namespace=NS, name=NAME, parameter_sets=["params", "params2"])
    inst.parameters.update({"name": "web", "level": 8})
    stub.CreateParameterSet(
        pb.CreateParameterSetRequest(
            parameter_set=ParameterSet(
                name="params2",  # global: found after the namespace misses
                parameters=[
                    NamedValueSource(name="level", source=src(value="2")),
                    NamedValueSource(name="color", source=src(value="blue")),
                ],
            )
        )
    )
    req = pb.UpdateInstallationRequest(installation=inst)
    req.update_mask.paths.extend(["parameters", "parameter_sets"])
    stub.UpdateInstallation(req)
    wait_final(stub, execute(stub, "install").id)
    env, files = dict(fake.specs[-1].env), dict(fake.specs[-1].files)
    assert env["LEVEL"] == "8"  # installation parameter beats the sets
    assert files["/cnab/app/color.txt"] == b"blue"  # the later set wins
    wait_final(stub, execute(stub, "upgrade", parameters={"level": 9}).id)
    assert dict(fake.specs[-1].env)["LEVEL"] == "9"  # the request beats everything
    assert "CONFIG" not in fake.specs[-1].env  # applyTo: install only


def test_violations_are_listed_before_any_container_starts(stub, app, fake):
    req = pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    req.parameters.update(
        {"level": 11, "color": "green", "name": "Not-Lower", "nope": 1, "password": 5}
    )
    f = failure(stub.ExecuteAction, req)
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and f.reason == "INVALID_INPUTS"
    assert set(f.violations) == {
        "parameters.level",
        "parameters.color",
        "parameters.name",
        "parameters.nope",
        "parameters.password",
    }
    assert "11" in f.violations["parameters.level"] or "maximum" in f.violations["parameters.level"]
    assert fake.specs == []
    runs = stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace=NS, name=NAME))
    assert runs.total_size == 0


def test_sensitive_values_stay_out_of_violations(stub, app):
    req = pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    req.parameters.update({"password": 123456789})
    f = failure(stub.ExecuteAction, req)
    assert "123456789" not in f.message and "123456789" not in f.violations["parameters.password"]


def test_required_inputs_missing(stub, app):
    inst = Installation(namespace=NS, name=NAME)
    req = pb.UpdateInstallationRequest(installation=inst)
    req.update_mask.paths.extend(["parameters", "credential_sets"])
    stub.UpdateInstallation(req)
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    )
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {"parameters.name", "credentials.token"} <= set(f.violations)


def test_credential_sources_resolve_at_run_time(stub, app, fake, monkeypatch, tmp_path):
    monkeypatch.setenv("APP_TOKEN_ENV", "tok-from-env")
    kube = tmp_path / "kubeconfig"
    kube.write_text("from-file")
    for token_source, expected in (
        (src(env="APP_TOKEN_ENV"), "tok-from-env"),
        (src(secret="token-secret"), "tok-from-store"),
        (src(path=str(kube)), "from-file"),
    ):
        cs = CredentialSet(
            namespace=NS,
            name="creds",
            credentials=[NamedValueSource(name="token", source=token_source)],
        )
        stub.UpdateCredentialSet(pb.UpdateCredentialSetRequest(credential_set=cs))
        run = execute(stub, "status")
        wait_final(stub, run.id)
        assert dict(fake.specs[-1].env)["TOKEN"] == expected


def test_unresolvable_source_is_failed_precondition_naming_it(stub, app):
    cs = CredentialSet(
        namespace=NS,
        name="creds",
        credentials=[NamedValueSource(name="token", source=src(env="NOT_SET_ANYWHERE_X"))],
    )
    stub.UpdateCredentialSet(pb.UpdateCredentialSetRequest(credential_set=cs))
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    )
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION and f.reason == "SOURCE_UNRESOLVED"
    assert "NOT_SET_ANYWHERE_X" in f.message and "token" in f.message
    cs.credentials[0].source.CopyFrom(src(command="exit 3"))
    stub.UpdateCredentialSet(pb.UpdateCredentialSetRequest(credential_set=cs))
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    )
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION and "status 3" in f.message


def test_porter_preconditions(stub, app):
    for action in ("upgrade", "uninstall", "backup"):
        f = failure(
            stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action=action)
        )
        assert f.code == grpc.StatusCode.FAILED_PRECONDITION and f.reason == "NOT_INSTALLED", action
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action="explode")
    )
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and f.reason == "UNKNOWN_ACTION"
    assert "status" in f.violations["action"]
    status = wait_final(stub, execute(stub, "status").id)  # stateless: fine before install
    assert status.state == RUN_STATE_SUCCEEDED and status.action == ACTION_INVOKE
    wait_final(stub, execute(stub, "install").id)
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    )
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION and f.reason == "ALREADY_INSTALLED"
    assert wait_final(stub, execute(stub, "install", force=True).id).state == RUN_STATE_SUCCEEDED
    assert wait_final(stub, execute(stub, "backup").id).state == RUN_STATE_SUCCEEDED
    assert wait_final(stub, execute(stub, "uninstall").id).state == RUN_STATE_SUCCEEDED
    inst = stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name=NAME)).installation
    assert inst.status.state == INSTALLATION_STATE_UNINSTALLED


def test_bad_requests(stub, app):
    f = failure(stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME))
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and "action" in f.violations
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name="nope", action="install")
    )
    assert f.code == grpc.StatusCode.NOT_FOUND
    f = failure(
        stub.ExecuteAction,
        pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install", request_id="x" * 129),
    )
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in f.violations
    f = failure(
        stub.ExecuteAction,
        pb.ExecuteActionRequest(
            namespace=NS, name=NAME, action="install", parameter_sets=["missing"]
        ),
    )
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION and f.reason == "PARAMETER_SET_NOT_FOUND"


def test_unknown_bundle_is_not_found(stub, app):
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository="localhost:5000/app", tag="v9")
    )
    req = pb.UpdateInstallationRequest(installation=inst)
    req.update_mask.paths.append("bundle")
    stub.UpdateInstallation(req)
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    )
    assert f.code == grpc.StatusCode.NOT_FOUND and f.reason == "BUNDLE_NOT_FOUND"


def test_outputs_problems_fail_the_run(stub, app, fake):
    fake.behaviour = lambda spec: ContainerResult(
        exit_code=0, outputs={"conn": b"x", "port": b"not-a-number"}
    )
    run = wait_final(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_FAILED
    assert (
        "'port' is not a valid integer" in run.message
        and "'secret' was not produced" in run.message
    )


def test_failed_container_keeps_outputs_it_wrote(stub, app, fake):
    fake.behaviour = lambda spec: ContainerResult(exit_code=3, outputs={"conn": b"partial"})
    run = wait_final(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_FAILED and "status 3" in run.message
    outs = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME, any_result=True)
    )
    assert [o.name for o in outs.outputs] == ["conn", "defaulted"]


def test_timeout_and_engine_errors_fail_with_a_message(stub, app, fake):
    fake.behaviour = lambda spec: ContainerResult(exit_code=137, timed_out=True)
    run = wait_final(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_FAILED and "timed out after 30s" in run.message
    fake.behaviour = lambda spec: ContainerResult(
        exit_code=None, error="image localhost/x not found"
    )
    run = wait_final(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_FAILED and run.message == "image localhost/x not found"


def test_one_active_run_and_idempotent_retry(stub, app, fake):
    fake.hold.set()
    run = execute(stub, "install", request_id="req-1")
    again = execute(stub, "install", request_id="req-1")
    assert again.id == run.id
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    )
    assert (
        f.code == grpc.StatusCode.ABORTED
        and f.reason == "RUN_IN_PROGRESS"
        and f.metadata["run_id"] == run.id
    )
    fake.hold.clear()
    wait_final(stub, run.id)
    assert execute(stub, "upgrade", request_id="req-1").id == run.id  # still the same run
    assert len(fake.specs) == 1


def test_cancel_running_and_pending(stub, app, fake):
    fake.hold.set()
    running = execute(stub, "install")
    assert fake.started.wait(10)
    watch = stub.WatchInstallationRuns(
        pb.WatchInstallationRunsRequest(namespace=NS, name=NAME, run_id=running.id), timeout=30
    )
    first = next(watch).run
    assert first.state == RUN_STATE_RUNNING and not first.canceling
    # Answered at once, the run marked canceling; the stop goes on in the background.
    cancelled = stub.CancelRun(pb.CancelRunRequest(namespace=NS, name=NAME, run_id=running.id)).run
    assert cancelled.state == RUN_STATE_RUNNING and cancelled.canceling
    seen = [m.run for m in watch if m.WhichOneof("event") == "run"]
    assert seen[-1].state == RUN_STATE_CANCELED and seen[-1].canceling
    assert any(r.state == RUN_STATE_RUNNING and r.canceling for r in seen)
    f = failure(stub.CancelRun, pb.CancelRunRequest(namespace=NS, name=NAME, run_id=running.id))
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION and f.reason == "RUN_FINISHED"


def test_cancel_pending_run_waiting_for_a_slot(stub, store, app, fake):
    # The only slot is held by another installation's run.
    other = Installation(
        namespace=NS,
        name="other",
        bundle=BundleReference(repository="localhost:5000/app", tag="v1.0.0"),
    )
    other.credential_sets.append("creds")
    other.parameters.update({"name": "other"})
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=other))
    fake.hold.set()
    blocker = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name="other", action="install")
    ).run
    assert fake.started.wait(10)
    queued = execute(stub, "install")
    cancelled = stub.CancelRun(pb.CancelRunRequest(namespace=NS, name=NAME, run_id=queued.id)).run
    assert cancelled.state == RUN_STATE_CANCELED and "before it started" in cancelled.message
    fake.hold.clear()
    run = ended_run(stub, NS, "other", blocker.id, timeout=10)
    assert run.state == RUN_STATE_SUCCEEDED
    assert [s.run_id for s in fake.specs] == [
        blocker.id
    ]  # the canceled run never reached the engine


def engine_lost(started: bool):
    from porter_bundle.executor import ExecutorUnavailable

    lost = ExecutorUnavailable("unix:///run/podman/podman.sock: connection refused")
    lost.started = started
    return lost


def run_logs(stub, run_id):
    return stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name=NAME, run_id=run_id)
    ).logs


def test_engine_lost_mid_run_reattaches_to_its_container(stub, app, fake):
    """The engine stops answering after the start: the run goes on and ends with what its
    container did (its whole log, outputs), then the container is removed."""

    def lost(spec):
        whole = b"running install\nafter the outage\n"
        fake.recoverable[spec.run_id] = ContainerResult(0, outputs=GOOD_OUTPUTS, logs=whole)
        raise engine_lost(started=True)

    fake.behaviour = lost
    run = wait_final(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_SUCCEEDED, run.message
    assert run_logs(stub, run.id) == "running install\nafter the outage\n"  # nothing repeated
    assert fake.recovered == [run.id] and fake.removed == [run.id]


def test_engine_lost_with_the_container_gone_fails_the_run(stub, app, fake):
    def lost(spec):
        raise engine_lost(started=True)

    fake.behaviour = lost
    run = wait_final(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_FAILED
    assert "container is gone" in run.message and "unreachable" in run.message
    assert fake.recovered == [run.id] and len(fake.specs) == 1  # never started twice


def test_engine_lost_before_the_start_runs_the_container_then(stub, app, fake):
    """Lost before its container started (a pull): started when the engine answers again."""
    tries = []

    def lost_once(spec):
        tries.append(spec.run_id)
        if len(tries) == 1:
            raise engine_lost(started=False)
        return ContainerResult(exit_code=0, outputs=GOOD_OUTPUTS, logs=b"done\n")

    fake.behaviour = lost_once
    run = wait_final(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_SUCCEEDED, run.message
    assert tries == [run.id, run.id] and fake.removed == [run.id]
