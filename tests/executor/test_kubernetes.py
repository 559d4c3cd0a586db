"""The Kubernetes Job executor against the API stand-in (tests/kube_cluster.py, real HTTP): the
exact objects it creates and in which order, and every way a run ends (success, failure, cancel,
timeout, unschedulable, image pull error, quota, a dropped log stream, a server restart)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from porter_bundle.executor import ContainerSpec, ExecutorUnavailable
from porter_bundle.executor.job_outputs import collect, record_line
from porter_bundle.executor.jobs import JobSettings, job_name, owned_by, run_job, run_secret
from porter_bundle.executor.kubernetes import KubernetesExecutor
from tests.kube_cluster import Cluster, kube_cluster
from tests.kube_kubelet import DIGEST, Script

NS = "runs"
HELPER = "registry.example/porter-bundle@sha256:" + "c" * 64


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with kube_cluster() as found:
        yield found


def make_executor(cluster: Cluster, tmp_path: Path, **kwargs: object) -> KubernetesExecutor:
    options: dict[str, object] = {"poll_seconds": 0.5, "stop_grace_seconds": 2}
    options.update(kwargs)
    return KubernetesExecutor(
        helper_image=HELPER,
        kubeconfig=str(cluster.kubeconfig(tmp_path / "kubeconfig")),
        namespace=NS,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def executor(cluster: Cluster, tmp_path: Path) -> AsyncIterator[KubernetesExecutor]:
    found = make_executor(cluster, tmp_path)
    yield found
    await found.aclose()


def spec(**kwargs: object) -> ContainerSpec:
    values: dict[str, object] = {
        "run_id": f"01KUBE{secrets.token_hex(8).upper()}",
        "image": "registry.example/app:v1",
        "image_digest": DIGEST,
        "env": {"CNAB_ACTION": "install", "CNAB_INSTALLATION_NAME": "hello", "TOKEN": "s3cret"},
        "files": {"/cnab/bundle.json": b"{}", "/cnab/app/color.txt": b"blue"},
        "timeout_seconds": 30.0,
    }
    values.update(kwargs)
    return ContainerSpec(**values)  # type: ignore[arg-type]


def collector() -> tuple[list[bytes], object]:
    chunks: list[bytes] = []

    async def on_log(chunk: bytes) -> None:
        chunks.append(chunk)

    return chunks, on_log


async def test_a_run_is_a_job_and_its_owned_secret_created_in_order(
    cluster: Cluster, executor: KubernetesExecutor
) -> None:
    outputs = {"level": b"7", "blob": b"\x00\x01binary"}
    cluster.script = lambda job: Script(lines=("one", "two", "three"), outputs=outputs)
    run = spec()
    chunks, on_log = collector()
    result = await executor.execute(run, on_log)  # type: ignore[arg-type]

    assert (result.exit_code, result.error, result.timed_out, result.canceled) == (
        0,
        "",
        False,
        False,
    )
    assert result.logs == b"one\ntwo\nthree\n" == b"".join(chunks)
    assert result.outputs == outputs
    assert result.image_digest == DIGEST
    name = job_name(run.run_id)
    settings = JobSettings(NS, HELPER, termination_grace_seconds=2)
    posts = cluster.calls("POST")
    assert [p.path for p in posts] == [
        f"/apis/batch/v1/namespaces/{NS}/jobs",
        f"/api/v1/namespaces/{NS}/secrets",
    ]
    assert posts[0].body == run_job(run, settings)  # exactly the object jobs.py builds
    assert posts[0].body["spec"]["suspend"] is True
    container = posts[0].body["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example/app@{DIGEST}"  # pinned by digest
    assert "s3cret" not in str(posts[0].body)
    job_uid = _created_uid(cluster, name)
    assert posts[1].body == owned_by(
        run_secret(run, settings), {"metadata": {"name": name, "uid": job_uid}}
    )
    jobs, secrets_path = f"/apis/batch/v1/namespaces/{NS}/jobs", f"/api/v1/namespaces/{NS}/secrets"
    writes = [(r.method, r.path) for r in cluster.requests if r.method != "GET"]
    assert writes == [
        ("POST", jobs),
        ("POST", secrets_path),
        ("PATCH", f"{jobs}/{name}"),
        ("DELETE", f"{jobs}/{name}"),
        ("DELETE", f"{secrets_path}/{name}"),
    ]
    patch = cluster.calls("PATCH")[0]
    assert patch.body == {"spec": {"suspend": False}}
    deletes = cluster.calls("DELETE")
    assert deletes[0].query == {"propagationPolicy": "Background", "gracePeriodSeconds": "0"}
    assert (
        not cluster.of_kind("jobs")
        and not cluster.of_kind("secrets")
        and not cluster.of_kind("pods")
    )
    assert await executor.orphans() == []


def _created_uid(cluster: Cluster, name: str) -> str:
    secret = next(r for r in cluster.calls("POST", "/secrets"))
    (owner,) = secret.body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["blockOwnerDeletion"]) == ("Job", name, True)
    uid: str = owner["uid"]
    assert len(uid) == 36  # the uid the stand-in gave the Job
    return uid


async def test_a_failing_image_gives_its_exit_code_and_its_outputs(
    cluster: Cluster, executor: KubernetesExecutor
) -> None:
    cluster.script = lambda job: Script(
        lines=("about to fail",), exit_code=3, outputs={"level": b"half"}
    )
    result = await executor.execute(spec())
    assert (result.exit_code, result.error) == (3, "")
    assert result.outputs == {"level": b"half"}
    assert result.logs == b"about to fail\n"


async def test_cancel_deletes_the_job_in_the_foreground_with_the_grace(
    cluster: Cluster, executor: KubernetesExecutor
) -> None:
    cluster.script = lambda job: Script(lines=("hanging",), hang=True)
    run = spec()
    chunks, on_log = collector()
    task = asyncio.create_task(executor.execute(run, on_log))  # type: ignore[arg-type]
    await _until(lambda: b"hanging\n" in chunks)
    assert await executor.cancel(run.run_id, 3) is True
    result = await asyncio.wait_for(task, 20)
    assert result.canceled and not result.error and not result.timed_out
    assert result.logs == b"hanging\n"
    foreground = next(r.query for r in cluster.calls("DELETE", "/jobs/"))
    assert foreground == {"propagationPolicy": "Foreground", "gracePeriodSeconds": "3"}
    template = cluster.calls("POST", "/jobs")[0].body["spec"]["template"]["spec"]
    assert template["terminationGracePeriodSeconds"] == 2
    assert not cluster.of_kind("jobs") and not cluster.of_kind("secrets")
    assert await executor.cancel(run.run_id, 3) is False


async def test_the_deadline_fails_the_run_with_kubernetes_reason(
    cluster: Cluster, executor: KubernetesExecutor
) -> None:
    cluster.script = lambda job: Script(lines=("slow",), hang=True)
    run = spec(timeout_seconds=1.0)
    started = time.monotonic()
    result = await asyncio.wait_for(executor.execute(run), 20)
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.canceled
    assert "DeadlineExceeded" in result.error and "longer than specified deadline" in result.error
    assert cluster.calls("POST", "/jobs")[0].body["spec"]["activeDeadlineSeconds"] == 1


@pytest.mark.parametrize(
    ("script", "expected", "start_timeout", "at_most"),
    [
        (
            Script(waiting=("ImagePullBackOff", 'Back-off pulling image "registry.example/app"')),
            "ImagePullBackOff: container invocation: Back-off pulling image",
            60.0,
            10.0,
        ),
        (Script(waiting=("ErrImagePull", "manifest unknown")), "ErrImagePull", 60.0, 10.0),
        (
            Script(unschedulable="0/3 nodes are available: 3 Insufficient cpu."),
            "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
            1.5,
            15.0,
        ),
        (
            Script(quota='pods "x" is forbidden: exceeded quota: compute, requested: cpu=1'),
            'FailedCreate: pods "x" is forbidden: exceeded quota',
            1.5,
            15.0,
        ),
    ],
    ids=["image-pull-backoff", "err-image-pull", "unschedulable", "quota"],
)
async def test_a_pod_that_never_starts_fails_the_run_with_its_reason_in_bounded_time(
    cluster: Cluster,
    tmp_path: Path,
    script: Script,
    expected: str,
    start_timeout: float,
    at_most: float,
) -> None:
    cluster.script = lambda job: script
    executor = make_executor(cluster, tmp_path, start_timeout_seconds=start_timeout)
    try:
        started = time.monotonic()
        result = await asyncio.wait_for(executor.execute(spec(timeout_seconds=3600.0)), 30)
        took = time.monotonic() - started
    finally:
        await executor.aclose()
    assert result.exit_code is None and not result.timed_out
    assert result.error.startswith("the run's pod did not start (") and expected in result.error
    if start_timeout < 10:  # waited for the bound, as the reason may clear
        assert took >= start_timeout
    assert took < at_most
    assert (
        next(r.query.get("propagationPolicy") for r in cluster.calls("DELETE", "/jobs/"))
        == "Foreground"
    )
    assert not cluster.of_kind("jobs") and not cluster.of_kind("secrets")


@pytest.mark.parametrize("same_stamp", [False, True], ids=["distinct-stamps", "one-stamp"])
async def test_a_dropped_log_stream_is_resumed_without_repeating_or_losing_lines(
    cluster: Cluster, executor: KubernetesExecutor, same_stamp: bool
) -> None:
    lines = tuple(f"line {n}" for n in range(8))
    cluster.script = lambda job: Script(
        lines=lines, drop_log_after=3, same_stamp=same_stamp, line_seconds=0.05
    )
    chunks, on_log = collector()
    result = await executor.execute(spec(), on_log)  # type: ignore[arg-type]
    expected = "".join(f"{line}\n" for line in lines).encode()
    assert b"".join(chunks) == expected == result.logs
    follows = [
        r.query for r in cluster.calls("GET", "/log") if r.query.get("container") == "invocation"
    ]
    assert len(follows) >= 2
    assert "sinceTime" not in follows[0] and "sinceTime" in follows[1]
    assert all(q["timestamps"] == "true" for q in follows)


async def test_outputs_beyond_the_limit_fail_the_run_with_a_clear_error(
    cluster: Cluster, executor: KubernetesExecutor, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "big").write_bytes(b"x" * 2048)
    record = record_line(collect(tmp_path / "out", 1024))  # what the sidecar prints
    cluster.script = lambda job: Script(outputs_log=record)
    result = await executor.execute(spec())
    assert result.exit_code == 0 and result.outputs == {}
    assert (
        result.error
        == "the run's outputs could not be read: the run's outputs take more than 1024 bytes"
    )


async def test_a_restarted_server_reattaches_to_the_job_by_its_labels(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.script = lambda job: Script(
        lines=tuple(f"tick {n}" for n in range(6)), line_seconds=0.3, outputs={"level": b"9"}
    )
    run = spec()
    first = make_executor(cluster, tmp_path)
    task = asyncio.create_task(first.execute(run))
    await _until(lambda: any(b"tick 1" in line for _, line in _log(cluster, run.run_id)))
    task.cancel()  # the server stops: the Job goes on
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.aclose()
    assert cluster.of_kind("jobs") and not cluster.calls("DELETE")

    second = make_executor(cluster, tmp_path)
    try:
        assert await second.orphans() == [run.run_id]
        result = await asyncio.wait_for(second.recover(run.run_id), 20)
    finally:
        await second.aclose()
    assert result is not None and result.exit_code == 0
    assert result.logs == "".join(f"tick {n}\n" for n in range(6)).encode()  # the whole log
    assert result.outputs == {"level": b"9"}
    label = [
        r.query["labelSelector"]
        for r in cluster.calls("GET", "/jobs")
        if "labelSelector" in r.query
    ]
    assert f"porter-bundle.sh/run-id={run.run_id}" in label[-1]
    assert not cluster.of_kind("jobs") and not cluster.of_kind("secrets")


async def test_recovering_a_run_without_a_job_removes_a_stray_secret_of_it(
    cluster: Cluster, executor: KubernetesExecutor
) -> None:
    run = spec()
    secret = run_secret(run, JobSettings(NS, HELPER))
    assert cluster.loop is not None
    asyncio.run_coroutine_threadsafe(cluster.put("secrets", secret, "ADDED"), cluster.loop).result(
        5
    )
    assert await executor.orphans() == []  # Jobs only: Secrets are never listed (nor readable)
    assert await executor.recover(run.run_id) is None
    assert not cluster.of_kind("secrets")
    assert not cluster.calls("GET", "/secrets")


async def test_a_job_kubernetes_refuses_is_a_run_error(
    cluster: Cluster, executor: KubernetesExecutor
) -> None:
    run = spec()
    job = run_job(run, JobSettings(NS, HELPER))
    assert cluster.loop is not None
    job["metadata"]["uid"] = "taken"
    asyncio.run_coroutine_threadsafe(cluster.put("jobs", job, "ADDED"), cluster.loop).result(5)
    result = await executor.execute(run)
    assert result.exit_code is None
    assert result.error.startswith("Kubernetes refused the run's Job: HTTP 409 AlreadyExists")


async def test_ping_answers_while_the_api_does_and_names_it_when_it_does_not(
    cluster: Cluster, executor: KubernetesExecutor, tmp_path: Path
) -> None:
    await executor.ping()
    assert cluster.calls("GET", "/version")[0].path == "/version"
    cluster.token = "rotated"
    with pytest.raises(ExecutorUnavailable, match="HTTP 401 Unauthorized"):
        await executor.ping()
    config = tmp_path / "gone"
    config.write_text(
        (tmp_path / "kubeconfig").read_text().replace(cluster.url, "http://127.0.0.1:9")
    )
    unreachable = KubernetesExecutor(helper_image=HELPER, kubeconfig=str(config), namespace=NS)
    try:
        with pytest.raises(ExecutorUnavailable, match=r"http://127.0.0.1:9 cannot be reached"):
            await unreachable.ping()
    finally:
        await unreachable.aclose()


def test_without_a_configuration_the_executor_cannot_be_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ExecutorUnavailable, match=r"not in a pod .* and no --kubeconfig"):
        KubernetesExecutor(helper_image=HELPER)
    with pytest.raises(ExecutorUnavailable, match=r"kubeconfig .*/missing does not exist"):
        KubernetesExecutor(helper_image=HELPER, kubeconfig=str(tmp_path / "missing"))


def _log(cluster: Cluster, run_id: str) -> list[tuple[int, bytes]]:
    name = job_name(run_id)
    return [
        entry
        for (_, pod, container), entries in list(cluster.logs.items())
        if pod.startswith(name) and container == "invocation"
        for entry in list(entries)
    ]


async def _until(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
