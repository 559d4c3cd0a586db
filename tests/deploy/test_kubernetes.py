"""deploy/kubernetes: each overlay renders with `kubectl kustomize`, every object is valid against
the Kubernetes OpenAPI schemas, the objects say what the README promises, and the server's
container, started as the Deployment starts it, passes the probes the kubelet would send."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
OVERLAYS = ("sqlite", "postgresql")
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests target (gRPC probes are GA since 1.27)."""


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: make system-deps installs it"
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def one(objects: list[dict[str, Any]], kind: str, name: str = "") -> dict[str, Any]:
    found = [
        o for o in objects if o["kind"] == kind and (not name or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def server_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment", "porter-bundle")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "server"]
    return container


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered):
    _, objects = rendered
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:  # pragma: no cover - the failure
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e}")


def test_the_operator_reaches_the_legacy_listener_on_porter_grpc_service_3001(rendered):
    _, objects = rendered
    service = one(objects, "Service", "porter-grpc-service")
    legacy = next(p for p in service["spec"]["ports"] if p["port"] == 3001)
    container = server_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[legacy["targetPort"]] == 3001
    config = one(objects, "ConfigMap", "porter-bundle")["data"]
    assert config["PORTER_BUNDLE_LEGACY_ADDRESS"].endswith(":3001")
    # Only the operator's namespace may reach the unauthenticated listener.
    policy = one(objects, "NetworkPolicy")["spec"]
    for rule in policy["ingress"]:
        if any(p["port"] == 3001 for p in rule["ports"]):
            (source,) = rule["from"]
            assert source["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "porter-operator-system"
            }
        else:
            assert 3001 not in {p["port"] for p in rule["ports"]}


def test_the_pod_runs_non_root_on_a_read_only_root_with_probes_that_do_not_flap(rendered):
    _, objects = rendered
    deployment = one(objects, "Deployment", "porter-bundle")
    pod = deployment["spec"]["template"]["spec"]
    container = server_container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    assert "service" not in container["readinessProbe"]["grpc"]  # "": the server overall
    grace = int(one(objects, "ConfigMap", "porter-bundle")["data"]["PORTER_BUNDLE_GRACE_PERIOD"])
    assert pod["terminationGracePeriodSeconds"] > grace


def test_rights_are_bound_per_namespace_never_cluster_wide(rendered):
    _, objects = rendered
    assert not [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert {b["roleRef"]["name"] for b in bindings} == {
        "porter-bundle-runs",
        "porter-bundle-secret-reader",
    }
    for role in (o for o in objects if o["kind"] == "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    reader = one(objects, "ClusterRole", "porter-bundle-secret-reader")
    assert reader["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]


def test_the_store_of_each_overlay(rendered):
    overlay, objects = rendered
    deployment = one(objects, "Deployment", "porter-bundle")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    env = {e["name"]: e for e in server_container(objects).get("env", [])}
    if overlay == "sqlite":
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert volumes["data"] == {
            "name": "data",
            "persistentVolumeClaim": {"claimName": "porter-bundle-data"},
        }
        one(objects, "PersistentVolumeClaim", "porter-bundle-data")
        assert "PORTER_BUNDLE_DATABASE" not in env
    else:
        assert "emptyDir" in volumes["data"]
        for name in ("PORTER_BUNDLE_DATABASE", "PORTER_BUNDLE_ENCRYPTION_KEY"):
            assert "secretKeyRef" in env[name]["valueFrom"]  # never a literal in the manifest


@pytest.fixture
def deployed_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The sqlite overlay's server container as a process: its args, its ConfigMap as the
    environment, its Secret's token file at the mounted path's place; only the listen addresses
    move to free loopback ports and the data directory to a temporary one."""
    objects = render("sqlite")
    container = server_container(objects)
    env = dict(one(objects, "ConfigMap", "porter-bundle")["data"])
    tokens = one(objects, "Secret", "porter-bundle-tokens")["stringData"]["tokens.yaml"]
    (tmp_path / "tokens.yaml").write_text(tokens)
    legacy = free_port()
    for key, port in (
        ("PORTER_BUNDLE_ADDRESS", free_port()),
        ("PORTER_BUNDLE_LEGACY_ADDRESS", legacy),
        ("PORTER_BUNDLE_METRICS_ADDRESS", free_port()),
    ):
        env[key] = f"127.0.0.1:{port}"
    env["PORTER_BUNDLE_DATA_DIR"] = str(tmp_path / "data")
    args = [
        str(tmp_path / "tokens.yaml") if a == "/etc/porter-bundle/tokens/tokens.yaml" else a
        for a in container["args"]
    ]
    assert args[0] == "serve"
    proc = subprocess.Popen(
        [sys.executable, "-m", "porter_bundle", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PORTER_BUNDLE_")}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, legacy
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server fails the test
            proc.kill()
            raise
        finally:
            assert proc.stderr is not None
            proc.stderr.close()


def test_the_container_as_deployed_passes_the_kubelets_probes(deployed_server):
    proc, legacy = deployed_server

    def probe(service: str) -> int | None:
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"the server exited {proc.returncode}: {proc.stderr.read()}")
        with grpc.insecure_channel(f"127.0.0.1:{legacy}") as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2
                )
            except grpc.RpcError:
                return None
            return int(answer.status)

    serving = health_pb2.HealthCheckResponse.SERVING
    wait_until(lambda: probe("liveness") == serving, "the liveness probe to pass")
    wait_until(lambda: probe("") == serving, "the readiness probe to pass")
