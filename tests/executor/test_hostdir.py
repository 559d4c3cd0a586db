"""Outputs through a bind-mounted host directory (executor/hostdir.py) against a real Podman:
used where the engine sees it, the archive where it does not (a Podman in a mount namespace of
its own, an image with a non-root user), private while the run lasts, gone after it, kept for
recovery, swept after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from porter_bundle.executor import ContainerExecutor
from porter_bundle.executor.hostdir import default_root
from tests.conftest import PodmanService, TestImage
from tests.engine import _ping, stop_process
from tests.executor.test_container import LogWatch, containers_of, spec_for
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

# Waits for the host directory to hold `go`, then writes outputs of every kind: a link to a
# host file and a FIFO must not be read (nor hang the read), the rest must.
WAIT_THEN_WRITE = """#!/bin/sh
out=/cnab/app/outputs
grep -q " $out " /proc/mounts && echo "outputs mounted" || echo "outputs in the container"
echo "seed=$(cat $out/seed)"
echo ready
i=0
while [ ! -e $out/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
rm -f $out/go
mkdir -p $out/sub
printf 'secret-value' > $out/password
printf 'nested' > $out/sub/file
ln -s /etc/hostname $out/host-link
mkfifo $out/fifo
exit 3
"""

# What WAIT_THEN_WRITE leaves as outputs besides the seed: no link, no FIFO.
WRITTEN = {"password": b"secret-value", "sub/file": b"nested"}

WRITE_ONE = """#!/bin/sh
out=/cnab/app/outputs
grep -q " $out " /proc/mounts && echo "outputs mounted" || echo "outputs in the container"
mkdir -p $out
id -u > $out/uid
"""


def run_dirs(root: Path) -> list[str]:
    return (
        sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        if root.exists()
        else []
    )


def gone(path: Path) -> bool:
    return not path.exists()


@pytest.fixture
def outputs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, podman_host: str) -> Path:
    """The executors of the test keep their outputs directories under the test's temp dir."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    (tmp_path / "runtime").mkdir()
    return default_root(podman_host)


async def test_outputs_come_through_a_private_host_directory(
    podman_host: str, test_image: TestImage, run_id: str, outputs_root: Path
) -> None:
    image = test_image("wait-then-write", WAIT_THEN_WRITE)
    spec = spec_for(run_id, image, files={"/cnab/app/outputs/seed": b"planted"})
    async with await asyncio.to_thread(ContainerExecutor, podman_host) as executor:
        logs = LogWatch()
        task = asyncio.create_task(executor.execute(spec, logs))
        await logs.wait_for("ready")
        (run_dir,) = [outputs_root / name for name in run_dirs(outputs_root)]
        # Private all the way up to the per-user directory; what we put in it, 0600.
        for level in (run_dir, outputs_root, outputs_root.parent, outputs_root.parent.parent):
            assert stat.S_IMODE(os.lstat(level).st_mode) == 0o700, level
        assert stat.S_IMODE(os.lstat(run_dir / "seed").st_mode) == 0o600
        (run_dir / "go").touch()  # the container sees what is written here
        result = await task
    assert result.logs.decode() == "outputs mounted\nseed=planted\nready\n"
    assert result.exit_code == 3
    assert dict(result.outputs) == {"seed": b"planted", **WRITTEN}
    assert gone(outputs_root)  # closing removed the engine's (empty) directory too


async def test_an_engine_that_does_not_see_the_directory_gets_the_archive(
    podman_service: PodmanService,
    test_image: TestImage,
    run_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine_api: docker.APIClient,
) -> None:
    image = test_image("write-one", WRITE_ONE)
    hidden = tmp_path / "runtime"
    hidden.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(hidden))
    with _engine_without(podman_service, hidden, tmp_path / "elsewhere.sock") as url:
        async with await asyncio.to_thread(ContainerExecutor, url) as executor:
            result = await executor.execute(spec_for(run_id, image))
            assert await executor.settle()
            assert await containers_of(engine_api, run_id) == []
    assert result.logs == b"outputs in the container\n"
    assert dict(result.outputs) == {"uid": b"0\n"}
    assert run_dirs(default_root(url)) == []


async def test_an_image_with_another_user_gets_the_archive(
    podman_service: PodmanService,
    podman_host: str,
    test_image: TestImage,
    run_id: str,
    outputs_root: Path,
    tmp_path: Path,
) -> None:
    base = test_image("write-one", WRITE_ONE)
    (tmp_path / "Containerfile").write_text(
        f"FROM {base}\nRUN mkdir -p /cnab/app/outputs && chown 1000 /cnab/app/outputs\nUSER 1000\n"
    )
    image = f"localhost/write-one-as-1000:{run_id.lower()}"
    await asyncio.to_thread(
        podman_service.podman, "build", "--network", "none", "-t", image, str(tmp_path)
    )
    try:
        async with await asyncio.to_thread(ContainerExecutor, podman_host) as executor:
            result = await executor.execute(spec_for(run_id, image))
    finally:
        await asyncio.to_thread(podman_service.podman, "rmi", image)
    assert result.logs == b"outputs in the container\n"
    assert dict(result.outputs) == {"uid": b"1000\n"}


async def test_recovery_reads_the_directory_and_a_sweep_removes_strays(
    podman_host: str, test_image: TestImage, run_id: str, outputs_root: Path
) -> None:
    image = test_image("wait-then-write", WAIT_THEN_WRITE)
    async with await asyncio.to_thread(ContainerExecutor, podman_host) as executor:
        logs = LogWatch()
        task = asyncio.create_task(
            executor.execute(spec_for(run_id, image, files={"/cnab/app/outputs/seed": b"s"}), logs)
        )
        await logs.wait_for("ready")
        task.cancel()  # a shutdown: the container and its directory stay for recovery
        with pytest.raises(asyncio.CancelledError):
            await task
    (run_dir,) = [outputs_root / name for name in run_dirs(outputs_root)]
    stray = outputs_root / "01STRAYRUNOFACRASH"  # its container is gone: nothing will read it
    stray.mkdir(mode=0o700)
    (stray / "password").write_bytes(b"left behind")

    async with await asyncio.to_thread(ContainerExecutor, podman_host) as after_restart:
        assert run_id in await after_restart.orphans()
        assert run_dirs(outputs_root) == [run_dir.name]  # the stray swept, the live one kept
        (run_dir / "go").touch()
        result = await after_restart.recover(run_id)
    assert result is not None
    assert result.exit_code == 3
    assert dict(result.outputs) == {"seed": b"s", **WRITTEN}
    assert run_dirs(outputs_root) == []


async def test_a_run_that_fails_to_start_leaves_no_directory(
    podman_host: str, test_image: TestImage, run_id: str, outputs_root: Path
) -> None:
    spec = spec_for(run_id, test_image("write-one", WRITE_ONE), command=("/no/such/entrypoint",))
    async with await asyncio.to_thread(ContainerExecutor, podman_host) as executor:
        result = await executor.execute(spec)
    assert result.exit_code is None
    assert result.error
    assert run_dirs(outputs_root) == []


@contextlib.contextmanager
def _engine_without(engine: PodmanService, hidden: Path, sock: Path) -> Iterator[str]:
    """A second Podman service on the same store that sees an empty tmpfs at ``hidden``: a
    local socket, but not this process's file system there (as a remote engine would)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    service = (
        f"mount -t tmpfs tmpfs '{hidden}' && exec podman system service --time=0 unix://{sock}"
    )
    log = (engine.root / f"{sock.name}.log").open("wb")
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", service],
        env=engine.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def started() -> bool:
            if process.poll() is not None:
                pytest.skip(f"no private mount namespace here: {log.name}")
            return _ping(sock)

        wait_until(started, "the second podman service to answer", timeout=60)
        yield f"unix://{sock}"
    finally:
        stop_process(process)
        log.close()
