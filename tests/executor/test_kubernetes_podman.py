"""The pod template the Kubernetes executor creates, played for real on Podman (``podman kube
play``, through the API stand-in): the env from the Secret, the files from the Secret volume,
the outputs handed back by the real sidecar (``python -m porter_bundle.executor.job_outputs``
in an image), on success, on failure, past the size limit, and on cancel."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from porter_bundle.executor import ContainerSpec
from porter_bundle.executor.kubernetes import KubernetesExecutor
from tests.engine import Engine
from tests.kube_cluster import Cluster, kube_cluster
from tests.kube_podman import helper_image

pytestmark = pytest.mark.slow

RUN = r"""#!/bin/sh
echo "action=$CNAB_ACTION token=$TOKEN"
out=/cnab/app/outputs
case "$CNAB_ACTION" in
  install)
    mkdir -p $out/nested
    cat /cnab/app/color.txt > $out/color
    printf '%s' "$TOKEN" > $out/token
    printf '\001\002binary' > $out/nested/blob
    grep -q '"hello"' /cnab/bundle.json && printf 'yes' > $out/bundle
    echo "wrote outputs" >&2 ;;
  fail) printf 'half' > $out/level; echo "failing" >&2; exit 3 ;;
  big) head -c 5000 /dev/zero > $out/big ;;
  hang) trap 'echo "got TERM"; exit 0' TERM; echo "hanging"; sleep 60 & wait ;;
esac
"""


@pytest.fixture
def cluster(podman_service: Engine) -> Iterator[Cluster]:
    with kube_cluster(podman_service) as found:
        yield found


@pytest.fixture
async def executor(
    cluster: Cluster, podman_service: Engine, tmp_path: Path
) -> AsyncIterator[KubernetesExecutor]:
    helper = await asyncio.to_thread(helper_image, podman_service)
    found = KubernetesExecutor(
        helper_image=helper,
        kubeconfig=str(cluster.kubeconfig(tmp_path / "kubeconfig")),
        namespace="runs",
        poll_seconds=0.5,
        stop_grace_seconds=2,
        outputs_limit_bytes=4096,
    )
    yield found
    await found.aclose()
    assert not cluster.of_kind("jobs") and not cluster.of_kind("secrets")
    pods = podman_service.podman("pod", "ps", "-q", "--filter", "name=pb-run-").stdout.split()
    assert pods == [], "pods left behind on Podman"


def spec(image: str, action: str) -> ContainerSpec:
    return ContainerSpec(
        run_id=f"01KPOD{secrets.token_hex(8).upper()}",
        image=image,
        env={"CNAB_ACTION": action, "CNAB_INSTALLATION_NAME": "hello", "TOKEN": "s3cret-value"},
        files={"/cnab/bundle.json": b'{"name": "hello"}', "/cnab/app/color.txt": b"blue\n"},
        timeout_seconds=60,
    )


async def test_env_files_and_outputs_on_a_real_runtime(
    executor: KubernetesExecutor, podman_service: Engine
) -> None:
    image = podman_service.image("kube-play", RUN)
    chunks: list[bytes] = []

    async def on_log(chunk: bytes) -> None:
        chunks.append(chunk)

    result = await asyncio.wait_for(executor.execute(spec(image, "install"), on_log), 120)
    assert (result.exit_code, result.error) == (0, "")
    assert result.outputs == {
        "color": b"blue\n",
        "token": b"s3cret-value",
        "nested/blob": b"\x01\x02binary",
        "bundle": b"yes",
    }
    assert b"".join(chunks) == result.logs
    assert result.logs.splitlines() == [b"action=install token=s3cret-value", b"wrote outputs"]


async def test_a_failed_run_still_hands_back_its_outputs(
    executor: KubernetesExecutor, podman_service: Engine
) -> None:
    image = podman_service.image("kube-play", RUN)
    result = await asyncio.wait_for(executor.execute(spec(image, "fail")), 120)
    assert (result.exit_code, result.error) == (3, "")
    assert result.outputs == {"level": b"half"}


async def test_outputs_past_the_limit_are_a_clear_error(
    executor: KubernetesExecutor, podman_service: Engine
) -> None:
    image = podman_service.image("kube-play", RUN)
    result = await asyncio.wait_for(executor.execute(spec(image, "big")), 120)
    assert result.exit_code == 0 and result.outputs == {}
    assert (
        result.error
        == "the run's outputs could not be read: the run's outputs take more than 4096 bytes"
    )


async def test_cancel_stops_the_real_pod_with_sigterm(
    executor: KubernetesExecutor, podman_service: Engine, cluster: Cluster
) -> None:
    image = podman_service.image("kube-play", RUN)
    run = spec(image, "hang")
    chunks: list[bytes] = []

    async def on_log(chunk: bytes) -> None:
        chunks.append(chunk)

    task = asyncio.create_task(executor.execute(run, on_log))
    for _ in range(600):
        if b"hanging\n" in chunks:
            break
        await asyncio.sleep(0.1)
    assert await executor.cancel(run.run_id, 2)
    result = await asyncio.wait_for(task, 60)
    assert result.canceled
    assert b"".join(chunks).splitlines()[-1] == b"got TERM"
