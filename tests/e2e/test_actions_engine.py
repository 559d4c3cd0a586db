"""Bundle actions end to end: real server, real SQLite, real Podman, busybox invocation images."""

from __future__ import annotations

import base64
import json
import re
import signal
import time

import grpc
import pytest
from google.protobuf import json_format

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    BundleReference,
    Installation,
)
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Run,
)
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter_bundle.executor import LABEL_RUN_ID, ContainerExecutor
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from porter_bundle.service.sources import DirectorySecretStore
from tests.helpers import FIXTURES, failure, serve_process, wait_until

pytestmark = pytest.mark.slow  # real containers: seconds each
NS = "dev"
RUN_TIMEOUT = 6.0

RUN_SCRIPT = r"""#!/bin/sh
echo "action=$CNAB_ACTION installation=$CNAB_INSTALLATION_NAME revision=$CNAB_REVISION"
out=/cnab/app/outputs
mkdir -p $out
case "$CNAB_ACTION" in
  install|upgrade)
    printf '%s' "$LEVEL" > $out/level
    cat /cnab/app/color.txt > $out/color
    printf '{"name":"%s","enabled":%s}' "$CNAB_P_NAME" "$CNAB_P_ENABLED" > $out/config
    printf '%s' "$TOKEN" > $out/token
    cat /root/.kube/config > $out/kubeconfig
    printf '\001\002binary' > $out/blob
    printf '1.5' > $out/ratio
    printf '["a", "b"]' > $out/tags
    grep -q '"engine-app"' /cnab/bundle.json && grep -q "$CNAB_REVISION" /cnab/claim.json \
      && printf 'true' > $out/contract
    echo "wrote outputs" >&2
    ;;
  status) echo "all good" ;;
  fail) echo "about to fail" >&2; printf 'half' > $out/level; exit 3 ;;
  slow) echo "tick"; sleep 1; echo "tock"; printf '2' > $out/level ;;
  hang) trap 'echo "got TERM"; exit 0' TERM; echo "hanging"; sleep 60 & wait ;;
  stubborn) trap 'echo "ignoring TERM"' TERM; echo "stubborn"; while :; do sleep 1 & wait $!; done ;;
  nooutput) echo "forgot" ;;
  uninstall) echo "bye" ;;
esac
"""

BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "engine-app",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "IMAGE"}],
    "definitions": {
        "level": {"type": "integer", "minimum": 1},
        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
        "name": {"type": "string"},
        "enabled": {"type": "boolean", "default": True},
        "token": {"type": "string", "writeOnly": True},
        "config": {"type": "object"},
        "file": {"type": "string", "contentEncoding": "base64"},
        "flag": {"type": "boolean"},
        "any": {"type": "string"},
        "ratio": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "parameters": {
        "level": {"definition": "level", "destination": {"env": "LEVEL"}, "required": True},
        "color": {"definition": "color", "destination": {"path": "/cnab/app/color.txt"}},
        "name": {"definition": "name", "destination": {}},
        "enabled": {"definition": "enabled", "destination": {}},
    },
    "credentials": {
        "token": {"env": "TOKEN", "required": True},
        "kubeconfig": {"path": "/root/.kube/config", "applyTo": ["install", "upgrade"]},
    },
    "outputs": {
        "level": {
            "definition": "level",
            "path": "/cnab/app/outputs/level",
            "applyTo": ["install", "upgrade", "slow"],
        },
        "color": {
            "definition": "color",
            "path": "/cnab/app/outputs/color",
            "applyTo": ["install", "upgrade"],
        },
        "config": {
            "definition": "config",
            "path": "/cnab/app/outputs/config",
            "applyTo": ["install", "upgrade"],
        },
        "token": {
            "definition": "token",
            "path": "/cnab/app/outputs/token",
            "applyTo": ["install", "upgrade"],
        },
        "kubeconfig": {
            "definition": "any",
            "path": "/cnab/app/outputs/kubeconfig",
            "applyTo": ["install"],
        },
        "blob": {"definition": "file", "path": "/cnab/app/outputs/blob", "applyTo": ["install"]},
        "ratio": {"definition": "ratio", "path": "/cnab/app/outputs/ratio", "applyTo": ["install"]},
        "tags": {"definition": "tags", "path": "/cnab/app/outputs/tags", "applyTo": ["install"]},
        "contract": {
            "definition": "flag",
            "path": "/cnab/app/outputs/contract",
            "applyTo": ["install"],
        },
        "missing": {
            "definition": "any",
            "path": "/cnab/app/outputs/missing",
            "applyTo": ["nooutput"],
        },
    },
    "actions": {
        name: {"stateless": True, "modifies": False}
        for name in ("status", "fail", "slow", "hang", "stubborn", "nooutput")
    },
}


def bundle_json(image: str, bundle: dict | None = None) -> str:
    doc = json.loads(json.dumps(bundle or BUNDLE))
    doc["invocationImages"][0]["image"] = image
    doc["invocationImages"][0].pop("contentDigest", None)
    return json.dumps(doc)


@pytest.fixture
def image(test_image) -> str:
    return test_image("engine-app", RUN_SCRIPT)


@pytest.fixture
def services(store, podman_host, tmp_path) -> Services:
    return scenario_services(store, lambda: ContainerExecutor(podman_host), tmp_path)


def scenario_services(store, executor, tmp_path) -> Services:
    """The services of the scenario over ``executor`` (a factory): its timeouts, its secret."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "kube").write_text("apiVersion: v1 # from the secret store")
    return Services.create(
        store,
        executor=executor,
        action_settings=ActionSettings(
            run_timeout_seconds=RUN_TIMEOUT,
            max_concurrent_runs=4,
            cancel_grace_seconds=2,
            network=None,
            engine_retry_seconds=60,
        ),
        secrets=DirectorySecretStore(secrets),
    )


def value(v) -> ValueSource:
    s = ValueSource()
    json_format.ParseDict(v, s.value)
    return s


def setup_app(
    stub, image: str, name: str = "app", *, bundle: dict | None = None, tag: str = "v1.0.0"
) -> None:
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference=f"localhost:5000/{name}:{tag}", bundle_json=bundle_json(image, bundle)
        )
    )
    creds = CredentialSet(
        namespace=NS,
        name=f"{name}-creds",
        credentials=[
            NamedValueSource(name="token", source=value("tok-e2e-secret")),
            NamedValueSource(name="kubeconfig", source=ValueSource(secret="kube")),
        ],
    )
    stub.CreateCredentialSet(pb.CreateCredentialSetRequest(credential_set=creds))
    params = ParameterSet(
        namespace=NS,
        name=f"{name}-params",
        parameters=[NamedValueSource(name="level", source=ValueSource(command="echo 4"))],
    )
    stub.CreateParameterSet(pb.CreateParameterSetRequest(parameter_set=params))
    inst = Installation(
        namespace=NS,
        name=name,
        bundle=BundleReference(repository=f"localhost:5000/{name}", tag=tag),
        credential_sets=[f"{name}-creds"],
        parameter_sets=[f"{name}-params"],
    )
    inst.parameters.update({"name": "web"})
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))


def execute(stub, action: str, name: str = "app", **kw) -> pb.ExecuteActionResponse:
    params = kw.pop("parameters", None)
    req = pb.ExecuteActionRequest(namespace=NS, name=name, action=action, **kw)
    if params:
        req.parameters.update(params)
    return stub.ExecuteAction(req).run


def wait_state(
    stub,
    run_id: str,
    name: str = "app",
    states=(RUN_STATE_SUCCEEDED, RUN_STATE_FAILED, RUN_STATE_CANCELED),
    timeout=60.0,
):
    request = pb.GetInstallationRunRequest(namespace=NS, name=name, run_id=run_id)
    last = Run()

    def reached() -> Run | None:
        nonlocal last
        last = stub.GetInstallationRun(request).run
        return last if last.state in states else None

    try:
        return wait_until(reached, f"run {run_id} to reach {states}", timeout=timeout)
    except AssertionError:
        raise AssertionError(f"run {run_id} stuck in state {last.state}: {last.message}") from None


def outputs_of(stub, run_id: str, name: str = "app") -> dict:
    resp = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=name, run_id=run_id)
    )
    return {o.name: o for o in resp.outputs}


def containers_of(podman_service, *run_ids: str) -> list[str]:
    """The names of the engine's containers of these runs (other tests' are not counted)."""
    listed = json.loads(podman_service.podman("ps", "-a", "--format", "json").stdout or "[]")
    return [c["Names"] for c in listed if (c.get("Labels") or {}).get(LABEL_RUN_ID) in run_ids]


def no_containers_left(podman_service, *run_ids: str) -> None:
    """Waits until the runs' containers are removed (once each run's end is stored)."""
    wait_until(
        lambda: containers_of(podman_service, *run_ids) == [],
        "the runs' containers to be removed",
        timeout=30,
    )


def run_ids(stub, name: str = "app") -> list[str]:
    """The IDs of every run of the installation."""
    request = pb.ListInstallationRunsRequest(namespace=NS, name=name)
    return [r.id for r in stub.ListInstallationRuns(request).runs]


def logs_of(stub, run_id: str, name: str = "app") -> str:
    return stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name=name, run_id=run_id)
    ).logs


def test_install_upgrade_invoke_uninstall(stub, image, podman_service):
    setup_app(stub, image)
    run = wait_state(stub, execute(stub, "install").id)
    assert run.state == RUN_STATE_SUCCEEDED, (run.message, logs_of(stub, run.id))
    # Nothing pinned: the image as named, and the digest the engine reported for it.
    assert run.invocation_image == image
    assert run.invocation_image_digest.startswith("sha256:")
    out = outputs_of(stub, run.id)
    assert (
        out["level"].value.number_value == 4 and out["level"].type == "integer"
    )  # command source, typed
    assert out["color"].value.string_value == "red"  # default, written to a file destination
    assert json_format.MessageToDict(out["config"].value) == {"name": "web", "enabled": True}
    assert out["token"].sensitive and not out["token"].HasField("value")
    assert out["kubeconfig"].value.string_value == "apiVersion: v1 # from the secret store"
    assert base64.b64decode(out["blob"].value.string_value) == b"\x01\x02binary"
    assert out["contract"].value.bool_value is True
    assert out["ratio"].value.number_value == 1.5 and out["ratio"].type == "number"
    assert (
        json_format.MessageToDict(out["tags"].value) == ["a", "b"] and out["tags"].type == "array"
    )
    logs = logs_of(stub, run.id)
    assert f"action=install installation=app revision={run.id}" in logs and "wrote outputs" in logs
    inst = stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name="app")).installation
    assert inst.status.state == INSTALLATION_STATE_INSTALLED

    up = wait_state(stub, execute(stub, "upgrade", parameters={"level": 9, "color": "blue"}).id)
    assert up.state == RUN_STATE_SUCCEEDED, up.message
    out = outputs_of(stub, up.id)
    assert out["level"].value.number_value == 9 and out["color"].value.string_value == "blue"
    assert "kubeconfig" not in out  # output applies to install only

    status = wait_state(stub, execute(stub, "status").id)
    assert status.state == RUN_STATE_SUCCEEDED and "all good" in logs_of(stub, status.id)
    latest = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name="app")
    )
    assert latest.run_id == status.id  # latest successful run, whatever it produced

    bye = wait_state(stub, execute(stub, "uninstall").id)
    assert bye.state == RUN_STATE_SUCCEEDED
    inst = stub.GetInstallation(pb.GetInstallationRequest(namespace=NS, name="app")).installation
    assert inst.status.state == INSTALLATION_STATE_UNINSTALLED
    no_containers_left(podman_service, *run_ids(stub))


def test_failures_timeouts_and_missing_outputs(stub, image):
    setup_app(stub, image)
    failed = wait_state(stub, execute(stub, "fail").id)
    assert failed.state == RUN_STATE_FAILED and "status 3" in failed.message
    assert "about to fail" in logs_of(stub, failed.id)
    missing = wait_state(stub, execute(stub, "nooutput").id)
    assert missing.state == RUN_STATE_FAILED and "'missing' was not produced" in missing.message
    started = time.monotonic()
    hung = wait_state(stub, execute(stub, "hang").id)
    assert hung.state == RUN_STATE_FAILED and f"timed out after {RUN_TIMEOUT:g}s" in hung.message
    assert time.monotonic() - started < RUN_TIMEOUT + 30


def test_cancel_a_running_container(stub, image, podman_service):
    setup_app(stub, image)
    run = execute(stub, "hang")
    wait_state(stub, run.id, states=(RUN_STATE_RUNNING,))
    wait_until(lambda: "hanging" in logs_of(stub, run.id), "the container to start", timeout=30)
    canceled = stub.CancelRun(pb.CancelRunRequest(namespace=NS, name="app", run_id=run.id)).run
    assert canceled.canceling
    assert wait_state(stub, run.id).state == RUN_STATE_CANCELED
    no_containers_left(podman_service, run.id)


def test_cancel_answers_at_once_when_the_container_ignores_sigterm(stub, image, podman_service):
    setup_app(stub, image)
    run = execute(stub, "stubborn")
    wait_state(stub, run.id, states=(RUN_STATE_RUNNING,))
    wait_until(lambda: "stubborn" in logs_of(stub, run.id), "the container to start", timeout=30)
    watch = stub.WatchInstallationRuns(
        pb.WatchInstallationRunsRequest(namespace=NS, name="app", run_id=run.id), timeout=60
    )
    assert next(watch).run.state == RUN_STATE_RUNNING
    started = time.monotonic()
    canceled = stub.CancelRun(
        pb.CancelRunRequest(namespace=NS, name="app", run_id=run.id), timeout=1.5
    ).run
    assert time.monotonic() - started < 1.5  # the cancel grace is 2 s
    assert canceled.state == RUN_STATE_RUNNING and canceled.canceling
    again = stub.CancelRun(pb.CancelRunRequest(namespace=NS, name="app", run_id=run.id)).run
    assert again.canceling and again.state == RUN_STATE_RUNNING
    seen = [m.run for m in watch if m.WhichOneof("event") == "run"]
    assert seen[-1].state == RUN_STATE_CANCELED and seen[-1].message == "canceled"
    assert time.monotonic() - started >= 2  # SIGKILL came after the grace
    assert "ignoring TERM" in logs_of(stub, run.id)
    no_containers_left(podman_service, run.id)


def test_concurrent_actions_on_many_installations_and_idempotent_retry(stub, image):
    names = [f"app{i}" for i in range(6)]
    for n in names:
        setup_app(stub, image, n)
    runs = [execute(stub, "slow", n, request_id=f"req-{n}") for n in names]
    assert [execute(stub, "slow", n, request_id=f"req-{n}").id for n in names] == [
        r.id for r in runs
    ]
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace=NS, name="app0", action="slow")
    )
    assert f.code in (grpc.StatusCode.ABORTED,) or wait_state(stub, runs[0].id, "app0")
    for n, r in zip(names, runs, strict=True):
        done = wait_state(stub, r.id, n)
        assert done.state == RUN_STATE_SUCCEEDED, done.message
        assert "tick\ntock" in logs_of(stub, r.id, n)


def test_porter_bundle_fixtures_with_a_test_image(stub, test_image):
    """Porter's real bundle.json files, invocation image swapped: their definitions drive real runs."""
    script = """#!/bin/sh
mkdir -p /cnab/app/outputs
cp /cnab/app/expected/* /cnab/app/outputs/ 2>/dev/null
env | sort
"""
    samples = {"boolean": "true", "integer": "3", "number": "1.5", "object": "{}", "array": "[]"}
    for rel in (
        "porter/pkg/porter/testdata/bundle.json",
        "porter/build/testdata/bundles/wordpress/.cnab/bundle.json",
    ):
        doc = json.loads((FIXTURES / rel).read_text())
        outputs = {
            n: o
            for n, o in (doc.get("outputs") or {}).items()
            if not o.get("applyTo") or "install" in o["applyTo"]
        }
        expected = {
            f"/cnab/app/expected/{n}": samples.get(
                doc["definitions"][o["definition"]].get("type"), f"out-{n}"
            )
            for n, o in outputs.items()
        }
        image = test_image("porter-fixture", script, expected)
        name = doc["name"]
        if name == "wordpress":
            # Its mysql dependency (Porter names it by full reference): a minimal bundle whose
            # mysql-password output (a default) is wired to the parent's parameter.
            mysql = {
                "schemaVersion": "v1.0.0",
                "name": "mysql",
                "version": "0.1.4",
                "invocationImages": [{"imageType": "docker", "image": image}],
                "definitions": {"pw": {"type": "string", "writeOnly": True, "default": "dep-pw"}},
                "outputs": {
                    "mysql-password": {
                        "definition": "pw",
                        "path": "/cnab/app/outputs/mysql-password",
                        "applyTo": ["install"],
                    }
                },
            }
            stub.CreateBundle(
                pb.CreateBundleRequest(
                    reference="localhost:5000/mysql:v0.1.4", bundle_json=json.dumps(mysql)
                )
            )
        stub.CreateBundle(
            pb.CreateBundleRequest(
                reference=f"localhost:5000/{name}:v{doc['version']}",
                bundle_json=bundle_json(image, doc),
            )
        )
        creds = CredentialSet(
            namespace=NS,
            name=f"{name}-creds",
            credentials=[
                NamedValueSource(name=c, source=value(f"cred-{c}"))
                for c in (doc.get("credentials") or {})
            ],
        )
        stub.CreateCredentialSet(pb.CreateCredentialSetRequest(credential_set=creds))
        inst = Installation(
            namespace=NS,
            name=name,
            bundle=BundleReference(repository=f"localhost:5000/{name}", version=doc["version"]),
            credential_sets=[f"{name}-creds"],
        )
        for p_name, p in (doc.get("parameters") or {}).items():
            definition = doc["definitions"][p["definition"]]
            if p.get("required") and "default" not in definition:
                inst.parameters.update(
                    {
                        p_name: {"string": "x", "integer": 1, "boolean": True}.get(
                            definition.get("type"), "x"
                        )
                    }
                )
        stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
        run = wait_state(stub, execute(stub, "install", name).id, name)
        out = outputs_of(stub, run.id, name) if run.state == RUN_STATE_SUCCEEDED else {}
        assert run.state == RUN_STATE_SUCCEEDED, (rel, run.message, logs_of(stub, run.id, name))
        assert set(outputs) <= set(out)
        for n in outputs:
            assert out[n].sensitive or json_format.MessageToDict(out[n].value) is not None
        if name == "wordpress":
            dependency = stub.GetInstallation(
                pb.GetInstallationRequest(namespace=NS, name="wordpress-mysql")
            ).installation
            assert dependency.status.state == INSTALLATION_STATE_INSTALLED
            # The dependency's sensitive output went to the parent's Porter-internal parameter.
            assert "porter-mysql-mysql-password-dep-output" in run.sensitive_parameters
        env_dump = logs_of(stub, run.id, name)
        for c_name, c in (doc.get("credentials") or {}).items():
            if c.get("env"):
                # The container got the credential; its stored log shows it masked.
                assert re.search(rf"^{c['env']}=\*+$", env_dump, re.M)
                assert f"cred-{c_name}" not in env_dump


# --- kill -9 and restart -----------------------------------------------------------------------


def setup_crash_app(stub, image: str, *names: str) -> None:
    """The bundle of the kill -9 tests (one output, ``level``) and an installation of it per name."""
    bundle = {
        "schemaVersion": "v1.0.0",
        "name": "crash-app",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {"level": {"type": "integer"}},
        "outputs": {"level": {"definition": "level", "path": "/cnab/app/outputs/level"}},
    }
    stub.CreateBundle(
        pb.CreateBundleRequest(reference="localhost:5000/crash:v1", bundle_json=json.dumps(bundle))
    )
    for name in names:
        installation = Installation(
            namespace=NS,
            name=name,
            bundle=BundleReference(repository="localhost:5000/crash", tag="v1"),
        )
        stub.CreateInstallation(pb.CreateInstallationRequest(installation=installation))


def test_kill_9_while_runs_are_in_flight(tmp_path, test_image, podman_service, podman_host):
    script = r"""#!/bin/sh
mkdir -p /cnab/app/outputs
echo "started $CNAB_ACTION"
while [ ! -f /tmp/never ] && [ "$(cat /proc/uptime | cut -d. -f1)" = "" ]; do :; done
sleep 3
printf '7' > /cnab/app/outputs/level
echo "finished"
"""
    image = test_image("crash-app", script)
    db = tmp_path / "crash.db"
    proc, port = serve_process(db, podman_host)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            setup_crash_app(stub, image, "survivor", "vanished")
            survivor = execute(stub, "install", "survivor")
            vanished = execute(stub, "install", "vanished")
            for n, r in (("survivor", survivor), ("vanished", vanished)):
                wait_state(stub, r.id, n, states=(RUN_STATE_RUNNING,), timeout=60)
                wait_until(
                    lambda r=r, n=n: "started" in logs_of(stub, r.id, n),
                    f"the container of {n} to start",
                    timeout=30,
                )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    # While the server is down, one container disappears.
    podman_service.podman("rm", "--force", f"porter-bundle-{vanished.id.lower()}")

    proc, port = serve_process(db, podman_host)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            done = wait_state(stub, survivor.id, "survivor", timeout=60)
            assert done.state == RUN_STATE_SUCCEEDED, done.message
            assert outputs_of(stub, survivor.id, "survivor")["level"].value.number_value == 7
            assert "finished" in logs_of(stub, survivor.id, "survivor")
            gone = wait_state(stub, vanished.id, "vanished", timeout=60)
            assert gone.state == RUN_STATE_FAILED and "vanished" in gone.message
            assert (
                stub.ListInstallationRuns(
                    pb.ListInstallationRunsRequest(namespace=NS, name="survivor")
                )
                .runs[0]
                .state
                != RUN_STATE_PENDING
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    no_containers_left(podman_service, survivor.id, vanished.id)
