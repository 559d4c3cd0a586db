"""The bundle scenario of the container executor (tests/e2e/test_actions_engine.py: install,
upgrade, invoke, uninstall, sensitive outputs, failure, timeout, cancel) with the Kubernetes Job
executor: real server, real SQLite, the Kubernetes API stand-in over real HTTP, and every Job's
pod played on the real Podman (tests/kube_podman.py). Then ``serve --executor kubernetes`` as a
real process, killed with SIGKILL mid-run and restarted: it re-attaches to the Job."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.run_pb2 import RUN_STATE_RUNNING, RUN_STATE_SUCCEEDED
from porter_bundle.executor.kubernetes import KubernetesExecutor
from porter_bundle.service import Services
from tests.e2e import test_actions_engine as scenario
from tests.e2e.test_actions_engine import NS, RUN_TIMEOUT, execute, logs_of, outputs_of, wait_state
from tests.engine import Engine
from tests.helpers import serve_process, wait_until
from tests.kube_cluster import Cluster, kube_cluster
from tests.kube_podman import helper_image

pytestmark = pytest.mark.slow
KUBE_NS = "bundles"


@pytest.fixture
def cluster(podman_service: Engine) -> Iterator[Cluster]:
    with kube_cluster(podman_service) as found:
        yield found
        assert not found.of_kind("jobs") and not found.of_kind("secrets"), "objects left behind"
    pods = podman_service.podman("pod", "ps", "-q", "--filter", "name=pb-run-").stdout.split()
    assert pods == [], "pods left behind on Podman"


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    return cluster.kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def helper(podman_service: Engine) -> str:
    return helper_image(podman_service)


@pytest.fixture
def executors() -> list[KubernetesExecutor]:
    """The executors the services made (one, on first use)."""
    return []


@pytest.fixture
def server(server, executors):
    """The test server; its executor closed on the server's loop before that stops."""
    yield server
    for made in executors:
        asyncio.run_coroutine_threadsafe(made.aclose(), server.loop).result(timeout=30)


@pytest.fixture
def services(store, kubeconfig: Path, helper: str, tmp_path: Path, executors) -> Services:
    def executor() -> KubernetesExecutor:
        made = KubernetesExecutor(
            helper_image=helper,
            kubeconfig=str(kubeconfig),
            namespace=KUBE_NS,
            stop_grace_seconds=2,
            poll_seconds=1,
        )
        executors.append(made)
        return made

    return scenario.scenario_services(store, executor, tmp_path)


@pytest.fixture
def image(test_image) -> str:
    return test_image("engine-app", scenario.RUN_SCRIPT)


def jobs_created(cluster: Cluster) -> list[dict]:
    return [r.body for r in cluster.calls("POST", f"/namespaces/{KUBE_NS}/jobs")]


def test_install_upgrade_invoke_uninstall(stub, image, podman_service, cluster):
    scenario.test_install_upgrade_invoke_uninstall(stub, image, podman_service)
    jobs = jobs_created(cluster)
    assert [j["metadata"]["annotations"]["cnab.io/action"] for j in jobs] == [
        "install",
        "upgrade",
        "status",
        "uninstall",
    ]
    assert {j["metadata"]["annotations"]["cnab.io/installation"] for j in jobs} == {f"{NS}/app"}
    # The credential (sensitive) reached the pod through the Secret only, never the Job.
    assert all("tok-e2e-secret" not in json.dumps(j) for j in jobs)
    secrets = [r.body for r in cluster.calls("POST", f"/namespaces/{KUBE_NS}/secrets")]
    assert all(s["metadata"]["ownerReferences"][0]["kind"] == "Job" for s in secrets)


def test_failures_timeouts_and_missing_outputs(stub, image, cluster):
    scenario.test_failures_timeouts_and_missing_outputs(stub, image)
    (hung,) = [
        r
        for r in stub.ListInstallationRuns(
            pb.ListInstallationRunsRequest(namespace=NS, name="app")
        ).runs
        if r.custom_action == "hang"
    ]
    assert (
        "(Kubernetes failed the run's Job (DeadlineExceeded: Job was active longer" in hung.message
    )
    deadlines = {j["spec"].get("activeDeadlineSeconds") for j in jobs_created(cluster)}
    assert deadlines == {int(RUN_TIMEOUT)}


def test_cancel_a_running_container(stub, image, podman_service, cluster):
    scenario.test_cancel_a_running_container(stub, image, podman_service)
    deletes = [r.query for r in cluster.calls("DELETE", f"/namespaces/{KUBE_NS}/jobs/")]
    assert deletes[0] == {"propagationPolicy": "Foreground", "gracePeriodSeconds": "2"}


def test_serve_executor_kubernetes_survives_kill_9_mid_run(
    tmp_path, test_image, podman_service, cluster, kubeconfig, helper
):
    script = r"""#!/bin/sh
mkdir -p /cnab/app/outputs
echo "started $CNAB_ACTION"
sleep 4
printf '7' > /cnab/app/outputs/level
echo "finished"
"""
    image = test_image("kube-crash-app", script)
    db = tmp_path / "crash.db"
    flags = (
        "--executor",
        "kubernetes",
        "--kubeconfig",
        str(kubeconfig),
        "--kubernetes-namespace",
        KUBE_NS,
        "--kubernetes-helper-image",
        helper,
    )
    proc, port = serve_process(db, "unix:///nonexistent", *flags)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            scenario.setup_crash_app(stub, image, "survivor")
            run = execute(stub, "install", "survivor")
            wait_state(stub, run.id, "survivor", states=(RUN_STATE_RUNNING,), timeout=60)
            wait_until(
                lambda: "started" in logs_of(stub, run.id, "survivor"),
                "the pod to start",
                timeout=60,
            )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert len(cluster.of_kind("jobs")) == 1  # the Job outlives the server

    proc, port = serve_process(db, "unix:///nonexistent", *flags)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            done = wait_state(stub, run.id, "survivor", timeout=90)
            assert done.state == RUN_STATE_SUCCEEDED, done.message
            assert outputs_of(stub, run.id, "survivor")["level"].value.number_value == 7
            logs = logs_of(stub, run.id, "survivor")
            assert logs.count("started install") == 1 and "finished" in logs
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    selectors = [r.query.get("labelSelector", "") for r in cluster.calls("GET", "/jobs")]
    assert any(f"porter-bundle.sh/run-id={run.id}" in s for s in selectors)  # re-attached by label
