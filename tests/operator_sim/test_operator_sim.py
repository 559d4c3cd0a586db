"""The Porter operator, simulated: its agent Jobs run the built agent image with podman against a
porter-bundle server on this host, which runs the bundle in (another) Podman engine.

Scenario: CredentialSet (its token a Kubernetes Secret) and ParameterSet resources, then an Installation -> install; a spec
change -> upgrade; the same generation again (retry annotation) -> nothing new; an agent killed
mid-run and its pod retried -> one run only; deletion -> ``uninstalled: true`` -> uninstall;
then the operator's outputs call, ``ListInstallationLatestOutputs{name, namespace}`` on the
legacy service, as grpc-go makes it (plaintext, no token, 4 MiB receive limit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from installation.v1alpha1 import installation_pb2 as legacy_pb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
)
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle.auth.tokens import hash_token
from porter_bundle.client import connection
from porter_bundle.client.connection import Target
from tests.engine import Engine
from tests.helpers import wait_until
from tests.image.images import Images
from tests.kube_api import KubeApi, kube_api
from tests.operator_sim.harness import (
    FAILED,
    SUCCEEDED,
    Operator,
    Resource,
    Server,
    installation_document,
    set_document,
)

pytestmark = pytest.mark.slow
NS = "operator-sim"
GRPC_GO_DEFAULT_RECEIVE = 4 * 1024 * 1024

RUN_SCRIPT = r"""#!/bin/sh
echo "action=$CNAB_ACTION installation=$CNAB_INSTALLATION_NAME"
out=/cnab/app/outputs
mkdir -p $out
i=0
while [ "$i" -lt "${DELAY:-0}" ]; do echo "working $i"; sleep 1; i=$((i+1)); done
case "$CNAB_ACTION" in
  install|upgrade) printf '%s' "$GREETING" > $out/message; printf '%s' "$TOKEN" > $out/token ;;
  uninstall) echo "bye"; printf 'gone' > $out/message ;;
esac
"""


def bundle(image: str) -> dict[str, Any]:
    return {
        "schemaVersion": "v1.0.0",
        "name": "hello",
        "version": "0.1.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {
            "str": {"type": "string"},
            "int": {"type": "integer", "default": 0},
            "secret": {"type": "string", "writeOnly": True},
        },
        "parameters": {
            "greeting": {"definition": "str", "destination": {"env": "GREETING"}},
            "delay": {"definition": "int", "destination": {"env": "DELAY"}},
        },
        "credentials": {"token": {"env": "TOKEN", "required": True}},
        "outputs": {
            "message": {"definition": "str", "path": "/cnab/app/outputs/message"},
            "token": {
                "definition": "secret",
                "path": "/cnab/app/outputs/token",
                "applyTo": ["install", "upgrade"],
            },
        },
    }


AGENT_TOKEN = "sim-agent-token"  # the agent's, from the porter-env Secret
ADMIN_TOKEN = "sim-admin-token"  # the test's own checks


def token_file(path: Path) -> Path:
    entries = [
        {"name": "porter-agent", "token": hash_token(AGENT_TOKEN), "roles": {"operator": [NS]}},
        {"name": "admin", "token": hash_token(ADMIN_TOKEN), "roles": {"operator": "*"}},
    ]  # fmt: skip
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def kube(tmp_path) -> Iterator[tuple[KubeApi, Path]]:
    """The Kubernetes API's Secrets (a local stand-in) and the server pod's token file."""
    with kube_api() as api:
        api.secrets[(NS, "hello-token")] = {"value": "t0ken"}
        sa = tmp_path / "serviceaccount"
        sa.mkdir()
        (sa / "token").write_text(api.token)
        (sa / "namespace").write_text("porter-bundle")
        yield api, sa / "token"


@pytest.fixture
def server(tmp_path, podman_service: Engine, kube) -> Iterator[Server]:
    """The recommended deployment: the v1 API with bearer tokens, the legacy service on its
    own plaintext, unauthenticated listener (what porter-grpc-service:3001 fronts), and
    `secret: X` read from the Kubernetes Secrets of the action's namespace."""
    api, token = kube
    running = Server(
        tmp_path,
        podman_service.url,
        "--token-file", str(token_file(tmp_path / "tokens.json")),
        "--legacy-address", "127.0.0.1:0",
        "--legacy-reveal-sensitive",
        "--secret-store", "kubernetes",
        "--kubernetes-api", api.url,
        "--kubernetes-token-file", str(token),
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def stub(server: Server) -> Iterator[porter_bundle_pb2_grpc.PorterBundleStub]:
    target = Target(server=f"127.0.0.1:{server.port}", token=ADMIN_TOKEN)
    with connection.channel(target) as channel:
        yield porter_bundle_pb2_grpc.PorterBundleStub(channel)


def operator_for(images: Images, root: Path, server: Server, **kw: Any) -> Operator:
    """The operator with porter-bundle's PorterConfig entry; the token comes from env (porter-env)."""
    config = {
        "namespace": NS,
        "default-storage": "porter-bundle",
        "storage": [
            {
                "name": "porter-bundle",
                "plugin": "porter-bundle",
                "config": {
                    "address": f"porter-bundle-api:{server.port}",
                    "token": "${env.PORTER_BUNDLE_TOKEN}",
                },
            }
        ],
    }
    return Operator(
        images,
        root,
        namespace=NS,
        porter_config=config,
        env_from={"PORTER_BUNDLE_TOKEN": AGENT_TOKEN},
        hosts=("porter-bundle-api",),
        **kw,
    )


def runs(stub: Any) -> list[Any]:
    return list(
        stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace=NS, name="hello")).runs
    )


def test_the_operator_drives_porter_bundle_end_to_end(
    tmp_path, images: Images, server: Server, stub, test_image
):
    image = test_image("operator-sim-hello", RUN_SCRIPT)
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/hello:v0.1.0", bundle_json=json.dumps(bundle(image))
        )
    )
    operator = operator_for(images, tmp_path / "jobs", server)

    # CredentialSet and ParameterSet resources: each applied by a Job.
    creds = set_document(
        "CredentialSet",
        {"name": "hello", "namespace": NS, "credentials": [{"name": "token", "source": {"secret": "hello-token"}}]},
    )  # fmt: skip
    job = operator.run_job(
        Resource("CredentialSet", "hello"), ["credentials", "apply", "credentials.yaml"],
        {"credentials.yaml": creds},
    )  # fmt: skip
    assert job.phase == SUCCEEDED, job.pods[-1].stderr
    assert job.conditions == {
        "Scheduled": "JobCreated",
        "Started": "JobStarted",
        "Completed": "JobSucceeded",
    }
    assert "Loading configuration config.yaml into /app/.porter/config.yaml" in job.pods[0].stderr
    params = set_document(
        "ParameterSet",
        {"name": "hello", "namespace": NS, "parameters": [{"name": "greeting", "source": {"value": "hi"}}]},
    )  # fmt: skip
    job = operator.run_job(
        Resource("ParameterSet", "hello"), ["parameters", "apply", "parameters.yaml"],
        {"parameters.yaml": params},
    )  # fmt: skip
    assert job.phase == SUCCEEDED, job.pods[-1].stderr

    spec: dict[str, Any] = {
        "name": "hello",
        "namespace": NS,
        "bundle": {"repository": "localhost:5000/hello", "version": "0.1.0"},
        "credentialSets": ["hello"],
        "parameterSets": ["hello"],
    }
    apply_args = ["installation", "apply", "installation.yaml"]

    # Created: install, and the log the operator's tests read after the args.
    job = operator.run_job(
        Resource("AgentAction", "hello-g1"), apply_args,
        {"installation.yaml": installation_document(spec)},
    )  # fmt: skip
    assert job.phase == SUCCEEDED, job.pods[-1].stderr
    assert "action=install installation=hello" in job.log_after_args(apply_args)
    assert [(r.action, r.state) for r in runs(stub)] == [(ACTION_INSTALL, RUN_STATE_SUCCEEDED)]

    # A spec change (generation 2): upgrade.
    spec["parameters"] = {"greeting": "hello again"}
    job = operator.run_job(
        Resource("AgentAction", "hello-g2", generation=1), apply_args,
        {"installation.yaml": installation_document(spec)},
    )  # fmt: skip
    assert job.phase == SUCCEEDED, job.pods[-1].stderr
    assert [r.action for r in runs(stub)] == [ACTION_UPGRADE, ACTION_INSTALL]

    # The same generation again (the retry annotation changed): nothing new.
    job = operator.run_job(
        Resource("AgentAction", "hello-g2", generation=1, retry="1"), apply_args,
        {"installation.yaml": installation_document(spec)},
    )  # fmt: skip
    assert job.phase == SUCCEEDED
    assert "The installation is already up-to-date." in job.pods[-1].stdout
    assert len(runs(stub)) == 2

    # Killed mid-run: the pod is retried, attaches to the run in flight; one run only.
    spec["parameters"] = {"greeting": "slowly", "delay": 4}
    files = {"installation.yaml": installation_document(spec)}
    resource = Resource("AgentAction", "hello-g3")
    first = operator.start_pod(resource, apply_args, files)
    wait_until(
        lambda: len(runs(stub)) == 3 and runs(stub)[0].state == RUN_STATE_RUNNING,
        "the upgrade to run",
        timeout=60,
    )
    time.sleep(1)
    images.podman("kill", first[0])
    job = operator.finish_job(resource, apply_args, first)
    assert job.phase == SUCCEEDED and len(job.pods) == 2, job.pods[-1].stderr
    assert job.pods[0].exit_code != 0
    assert "attached" in job.pods[1].stdout and "working 3" in job.pods[1].stdout
    latest = runs(stub)[0]
    assert (latest.action, latest.state) == (ACTION_UPGRADE, RUN_STATE_SUCCEEDED)
    assert len(runs(stub)) == 3

    # Deleted (policy delete): uninstalled: true -> uninstall.
    spec["uninstalled"] = True
    job = operator.run_job(
        Resource("AgentAction", "hello-delete"), apply_args,
        {"installation.yaml": installation_document(spec)},
    )  # fmt: skip
    assert job.phase == SUCCEEDED, job.pods[-1].stderr
    assert runs(stub)[0].action == ACTION_UNINSTALL and len(runs(stub)) == 4

    # The operator's outputs call on the legacy listener: plaintext, no token, grpc-go's
    # receive limit; it copies name, type, sensitive and value.string_value.
    options = [("grpc.max_receive_message_length", GRPC_GO_DEFAULT_RECEIVE)]
    legacy = f"127.0.0.1:{server.ports['legacy']}"
    with grpc.insecure_channel(legacy, options=options) as channel:
        resp = porter_pb2_grpc.PorterStub(channel).ListInstallationLatestOutputs(
            legacy_pb.ListInstallationLatestOutputRequest(name="hello", namespace=NS)
        )
        # Only the legacy service there: the v1 API is not reachable without its token.
        with pytest.raises(grpc.RpcError) as refused:
            porter_bundle_pb2_grpc.PorterBundleStub(channel).ListInstallations(
                pb.ListInstallationsRequest(namespace=NS)
            )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    copied = {o.name: (o.type, o.sensitive, o.value.string_value) for o in resp.outputs}
    assert copied == {"message": ("string", False, "gone"), "token": ("string", True, "t0ken")}
    # The v1 port wants the token (the agent had it from porter-env).
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.RpcError) as anonymous:
            porter_bundle_pb2_grpc.PorterBundleStub(channel).ListInstallations(
                pb.ListInstallationsRequest(namespace=NS)
            )
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # The generic AgentActions of the operator's own tests.
    job = operator.run_job(
        Resource("AgentAction", "outputs"),
        ["installation", "outputs", "list", "-n", NS, "-i", "hello", "-o", "json"],
    )
    assert job.phase == SUCCEEDED
    assert {o["name"] for o in json.loads(job.pods[0].stdout)} == {"message", "token"}


def test_a_job_that_keeps_failing_ends_failed_after_backoff_limit_plus_one_pods(
    tmp_path, images: Images, server: Server
):
    operator = operator_for(images, tmp_path / "jobs", server, backoff_limit=1)
    job = operator.run_job(
        Resource("AgentAction", "bad"), ["installation", "apply", "missing.yaml"]
    )
    assert job.phase == FAILED and len(job.pods) == 2
    assert job.conditions["Failed"] == "JobFailed" and "Completed" not in job.conditions
    assert all(p.exit_code == 1 for p in job.pods)
    assert "Error: could not read file missing.yaml" in job.pods[0].stderr
