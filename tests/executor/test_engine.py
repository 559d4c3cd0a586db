"""Reaching the engine: addresses tried, what a failure says, DOCKER_HOST, API version, closing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from docker.constants import DEFAULT_DOCKER_API_VERSION

from porter_bundle.executor import ContainerExecutor, ContainerSpec, ExecutorUnavailable
from porter_bundle.executor.engine import _common_api_version

pytestmark = pytest.mark.slow


def test_unreachable_host_names_what_was_tried(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(ExecutorUnavailable) as raised:
        ContainerExecutor(host)
    assert host in str(raised.value)
    assert "no such socket" in str(raised.value)


def test_a_socket_nobody_answers_on(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))  # bound, never listening: connections are refused
        with pytest.raises(ExecutorUnavailable) as raised:
            ContainerExecutor(f"unix://{path}")
    assert f"unix://{path}" in str(raised.value)


def test_default_hosts_are_all_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if any(os.path.exists(p) for p in ("/var/run/docker.sock", "/run/podman/podman.sock")):
        pytest.skip("this machine has an engine on a default socket")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker-host.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    with pytest.raises(ExecutorUnavailable) as raised:
        ContainerExecutor()
    message = str(raised.value)
    for host in (
        f"unix://{tmp_path}/docker-host.sock",
        "unix:///var/run/docker.sock",
        f"unix://{tmp_path}/xdg/podman/podman.sock",
        "unix:///run/podman/podman.sock",
    ):
        assert host in message


async def test_docker_host_is_used(podman_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", podman_host)
    executor = await asyncio.to_thread(ContainerExecutor)
    async with executor:
        assert executor.url == podman_host
        assert isinstance(await executor.orphans(), list)


async def test_a_closed_executor_refuses_work(podman_host: str, run_id: str) -> None:
    executor = await asyncio.to_thread(ContainerExecutor, podman_host)
    await executor.aclose()
    with pytest.raises(ExecutorUnavailable):
        await executor.execute(ContainerSpec(run_id=run_id, image="localhost/whatever:v1"))


def test_the_api_version_is_the_newest_both_speak() -> None:
    assert _common_api_version("1.24") == "1.24"
    assert _common_api_version("99.0") == DEFAULT_DOCKER_API_VERSION
    assert _common_api_version(None) == DEFAULT_DOCKER_API_VERSION
    assert _common_api_version("not-a-version") == DEFAULT_DOCKER_API_VERSION
