"""Reaching the engine: addresses tried, what a failure says, DOCKER_HOST, API version, closing."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import requests
from docker.constants import DEFAULT_DOCKER_API_VERSION

from porter_bundle.executor import ContainerExecutor, ContainerSpec, ExecutorUnavailable
from porter_bundle.executor.engine import _common_api_version
from tests.engine import WedgedEngine

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


def test_an_engine_that_accepts_and_never_answers_is_unavailable_in_time(tmp_path: Path) -> None:
    with WedgedEngine(tmp_path / "wedged.sock") as wedged:
        started = time.monotonic()
        with pytest.raises(ExecutorUnavailable) as raised:
            ContainerExecutor(wedged.url, probe_timeout_seconds=1)
        assert time.monotonic() - started < 5
    assert wedged.url in str(raised.value)
    assert "timed out" in str(raised.value).lower()


async def test_every_call_to_an_engine_that_stops_answering_times_out(
    tmp_path: Path, run_id: str
) -> None:
    with WedgedEngine(tmp_path / "wedged.sock", ping=True) as wedged:
        executor = await asyncio.to_thread(
            ContainerExecutor, wedged.url, probe_timeout_seconds=1, request_timeout_seconds=1
        )
        async with executor:
            await executor.ping()  # it still answers /_ping
            calls = (
                lambda: executor.execute(ContainerSpec(run_id=run_id, image="localhost/x:v1")),
                lambda: executor.orphans(),
                lambda: executor.cancel(run_id, 0.1),
                lambda: executor.recover(run_id),
            )
            for call in calls:
                started = time.monotonic()
                with pytest.raises(ExecutorUnavailable) as raised:
                    await asyncio.wait_for(call(), 10)
                assert time.monotonic() - started < 5
                assert wedged.url in str(raised.value)
                assert "did not answer in time" in str(raised.value)
            wedged.answers_ping = False
            started = time.monotonic()
            with pytest.raises(ExecutorUnavailable) as raised:
                await executor.ping()
            assert time.monotonic() - started < 5
            assert wedged.url in str(raised.value)


async def test_a_pull_from_an_engine_that_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_id: str
) -> None:
    """A pull is a stream with its own read timeout (the SDK's pull has none)."""
    from porter_bundle.executor import pulls

    monkeypatch.setattr(pulls, "PULL_READ_TIMEOUT_SECONDS", 1)
    with WedgedEngine(tmp_path / "wedged.sock", ping=True) as wedged:
        executor = await asyncio.to_thread(
            ContainerExecutor, wedged.url, probe_timeout_seconds=1, request_timeout_seconds=30
        )
        async with executor:
            engine = executor._engine
            started = time.monotonic()
            with pytest.raises(requests.exceptions.Timeout):
                await asyncio.to_thread(
                    pulls._docker_pull, engine, "localhost/x:v1", "localhost", None
                )
            assert time.monotonic() - started < 5
    assert any("/images/create" in r for r in wedged.requests)
