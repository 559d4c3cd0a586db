"""Images for the container executor against a real Podman: missing, pulled over plain HTTP,
pulled with registry credentials."""

from __future__ import annotations

import asyncio

import docker
import pytest

from porter_bundle.executor import ContainerExecutor, ContainerSpec
from tests.conftest import PodmanService, RegistryLogin, TestImage
from tests.helpers import own_orphans

pytestmark = pytest.mark.slow


async def test_missing_image_that_cannot_be_pulled(
    executor: ContainerExecutor, run_id: str
) -> None:
    # Port 1 refuses at once: no DNS, no waiting on a network that is not there.
    image = "127.0.0.1:1/nobody/missing:v1"
    result = await executor.execute(ContainerSpec(run_id=run_id, image=image))
    assert result.exit_code is None
    assert f"pulling image {image} failed" in result.error
    assert "connection refused" in result.error
    assert await own_orphans(executor, run_id) == []


async def test_pull_from_a_plain_http_registry(
    podman_host: str,
    podman_service: PodmanService,
    oci_registry: str,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    local = test_image("pulled", "#!/bin/sh\necho pulled and ran\n")
    remote = f"{oci_registry}/{local.removeprefix('localhost/')}"
    await asyncio.to_thread(podman_service.podman, "push", "--tls-verify=false", local, remote)
    spec = ContainerSpec(run_id=run_id, image=remote)

    strict = await asyncio.to_thread(ContainerExecutor, podman_host)
    async with strict:
        refused = await strict.execute(spec)
    assert refused.exit_code is None
    assert f"pulling image {remote} failed" in refused.error
    assert "http: server gave HTTP response to HTTPS client" in refused.error

    lenient = await asyncio.to_thread(
        ContainerExecutor, podman_host, pull_insecure_registries=frozenset({oci_registry})
    )
    async with lenient:
        result = await lenient.execute(spec)
        assert (result.exit_code, result.logs, result.error) == (0, b"pulled and ran\n", "")
        assert await lenient.settle()
        assert await own_orphans(lenient, run_id) == []
    await asyncio.to_thread(engine_api.remove_image, remote)


async def test_pull_with_registry_auth(
    podman_host: str,
    podman_service: PodmanService,
    oci_registry_with_auth: RegistryLogin,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    registry = oci_registry_with_auth
    local = test_image("private", "#!/bin/sh\necho private\n")
    remote = f"{registry.host}/{local.removeprefix('localhost/')}"
    await asyncio.to_thread(
        podman_service.podman,
        "push",
        "--tls-verify=false",
        "--creds",
        f"{registry.user}:{registry.password}",
        local,
        remote,
    )
    insecure = frozenset({registry.host})
    spec = ContainerSpec(run_id=run_id, image=remote)

    for auth in (None, {registry.host: (registry.user, "wrong-password")}):
        anonymous = await asyncio.to_thread(
            ContainerExecutor, podman_host, pull_insecure_registries=insecure, registry_auth=auth
        )
        async with anonymous:
            refused = await anonymous.execute(spec)
        assert f"pulling image {remote} failed" in refused.error
        assert "unauthorized" in refused.error
        assert "wrong-password" not in refused.error

    logged_in = await asyncio.to_thread(
        ContainerExecutor,
        podman_host,
        pull_insecure_registries=insecure,
        registry_auth={registry.host: (registry.user, registry.password)},
    )
    async with logged_in:
        result = await logged_in.execute(spec)
    assert (result.exit_code, result.logs, result.error) == (0, b"private\n", "")
    await asyncio.to_thread(engine_api.remove_image, remote)


async def test_an_image_without_the_pinned_digest_never_runs(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    # The engine's image has other digests than the pinned one: cnab-go's check refuses it.
    image = test_image("unpinned", "#!/bin/sh\necho should not run\n")
    pinned = "sha256:" + "1" * 64
    result = await executor.execute(ContainerSpec(run_id=run_id, image=image, image_digest=pinned))
    assert result.exit_code is None and result.logs == b""
    assert "content digest mismatch" in result.error and pinned in result.error
    assert await own_orphans(executor, run_id) == []

    unpinned = await executor.execute(ContainerSpec(run_id=run_id, image=image))
    # Podman reports a digest even for an image it never pulled: the one it would push.
    assert unpinned.exit_code == 0 and unpinned.image_digest.startswith("sha256:")
    assert unpinned.image_digest != pinned


async def test_the_digest_that_ran_is_reported(
    podman_host: str,
    podman_service: PodmanService,
    oci_registry: str,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    local = test_image("digested", "#!/bin/sh\necho digested\n")
    remote = f"{oci_registry}/{local.removeprefix('localhost/')}"
    await asyncio.to_thread(podman_service.podman, "push", "--tls-verify=false", local, remote)
    insecure = frozenset({oci_registry})
    runner = await asyncio.to_thread(
        ContainerExecutor, podman_host, pull_insecure_registries=insecure
    )
    async with runner:
        by_tag = await runner.execute(ContainerSpec(run_id=run_id, image=remote))
        assert by_tag.exit_code == 0 and by_tag.image_digest.startswith("sha256:")
        digest = by_tag.image_digest
        by_digest = await runner.execute(
            ContainerSpec(
                run_id=run_id,
                image=f"{remote.rpartition(':')[0]}@{digest}",
                image_digest=digest,
            )
        )
        assert (by_digest.exit_code, by_digest.image_digest, by_digest.error) == (0, digest, "")
    await asyncio.to_thread(engine_api.remove_image, remote)
