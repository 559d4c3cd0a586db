"""Fixtures for the container executor's tests: an executor on the session's Podman, and a
plain Docker API client to look at what it did."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import docker
import pytest

from porter_bundle.executor import LABEL_MANAGED, LABEL_RUN_ID, ContainerExecutor


@pytest.fixture
def engine_api(podman_host: str) -> Iterator[docker.APIClient]:
    """A Docker API client of the test's own, to inspect and set up containers directly."""
    # A fixed API version: "auto" would ask /version, which Podman answers slowly.
    api = docker.APIClient(base_url=podman_host, version="1.41")
    yield api
    api.close()


@pytest.fixture
async def executor(
    podman_host: str, engine_api: docker.APIClient, run_id: str
) -> AsyncIterator[ContainerExecutor]:
    """An executor on the session's Podman; checks that no container of the test's runs (their
    IDs start with ``run_id``) outlived it."""
    executor = await asyncio.to_thread(ContainerExecutor, podman_host, stop_grace_seconds=0.5)
    yield executor
    await executor.aclose()
    managed = await asyncio.to_thread(
        engine_api.containers, all=True, filters={"label": f"{LABEL_MANAGED}=true"}
    )
    leftovers = [c for c in managed if (c["Labels"] or {}).get(LABEL_RUN_ID, "").startswith(run_id)]
    for container in leftovers:  # so that one failure does not cascade into the next tests
        await asyncio.to_thread(engine_api.remove_container, container["Id"], force=True)
    assert not leftovers, f"containers left behind: {[c['Names'] for c in leftovers]}"


@pytest.fixture
def run_id() -> str:
    """A fresh run ID (the service uses ULIDs: upper-case, like this)."""
    return f"01TEST{secrets.token_hex(8).upper()}"
