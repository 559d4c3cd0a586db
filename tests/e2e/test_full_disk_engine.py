"""Runs that tell the truth through a full disk: a real server process whose SQLite data
directory is a small tmpfs, filled with dd while 2 runs write their logs, real Podman.

While the disk is full, a run's bookkeeping writes are retried and its container is kept, so
a run is never RUNNING without one; once there is room (also after a restart of the server)
each run ends with its true result, its whole log and outputs; no managed container is left.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.run_pb2 import RUN_STATE_RUNNING, RUN_STATE_SUCCEEDED
from porter_bundle.executor import LABEL_RUN_ID
from tests.helpers import ended_run, result_bundle_installations, wait_until
from tests.test_cli import start

pytestmark = pytest.mark.slow
NS = "dev"
REF = "localhost:5000/full-disk:v1"
DISK_SIZE = "8m"
# 40 lines of 5,000 bytes over ~4 s (200 KB), then a pause in which the disk is full.
SCRIPT = r"""#!/bin/sh
mkdir -p /cnab/app/outputs
i=0
while [ $i -lt 40 ]; do
  head -c 5000 /dev/zero | tr '\0' 'x'; echo " $i"
  i=$((i+1)); sleep 0.1
done
sleep 2
echo "done install"
printf 'out-%s' "$CNAB_INSTALLATION_NAME" > /cnab/app/outputs/result
"""
EXPECTED_LOG = "".join("x" * 5000 + f" {i}\n" for i in range(40)) + "done install\n"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE (needs root: mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fills the disk with dd (it stops at ENOSPC)."""
    filler = disk / "filler"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False
    )
    assert shutil.disk_usage(disk).free < 64 * 1024
    return filler


class Server:
    """A server process on the small disk; its stderr read as it comes (it must not block)."""

    def __init__(self, tmp_path: Path, disk: Path, podman_host: str) -> None:
        self.proc, port = start(
            tmp_path,
            {},
            "--address",
            "127.0.0.1:0",
            "--database",
            f"sqlite:///{disk / 'server.db'}",
            "--container-host",
            podman_host,
            "--grace-period",
            "1",
        )
        self.stderr: list[str] = []
        assert self.proc.stderr is not None
        self._reader = threading.Thread(
            target=lambda: self.stderr.extend(self.proc.stderr),  # type: ignore[arg-type]
            daemon=True,
        )
        self._reader.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = porter_bundle_pb2_grpc.PorterBundleStub(self.channel)

    def stop(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def containers_of(podman_service, run_id: str) -> list[str]:
    """The states of the run's containers ("up", "exited", as the first word of each)."""
    listed = podman_service.podman(
        "ps", "-a", "--filter", f"label={LABEL_RUN_ID}={run_id}", "--format", "{{.Status}}"
    )
    return [line.split()[0].lower() for line in listed.stdout.splitlines() if line.strip()]


def run_of(stub, name: str, run_id: str):
    request = pb.GetInstallationRunRequest(namespace=NS, name=name, run_id=run_id)
    return stub.GetInstallationRun(request, timeout=10).run


def start_runs(stub, names: list[str]) -> dict[str, str]:
    runs = {}
    for name in names:
        request = pb.ExecuteActionRequest(namespace=NS, name=name, action="install")
        runs[name] = stub.ExecuteAction(request, timeout=30).run.id
    for name, run_id in runs.items():
        wait_until(
            lambda n=name, r=run_id: run_of(stub, n, r).state == RUN_STATE_RUNNING,
            f"run {run_id} to run",
            timeout=60,
        )
    return runs


def while_full(stub, podman_service, runs: dict[str, str]) -> None:
    """The containers end while the disk is full: their runs stay RUNNING (reads still work)
    with their containers kept, never RUNNING without one."""
    for run_id in runs.values():
        wait_until(
            lambda r=run_id: containers_of(podman_service, r) == ["exited"],
            f"the container of run {run_id} to exit",
            timeout=60,
        )
    for name, run_id in runs.items():
        assert run_of(stub, name, run_id).state == RUN_STATE_RUNNING
        assert containers_of(podman_service, run_id) == ["exited"]


def check_ended(stub, podman_service, runs: dict[str, str]) -> None:
    """Each run ended with its true result, its whole log and outputs; no container left."""
    for name, run_id in runs.items():
        ended = ended_run(stub, NS, name, run_id, timeout=90)
        assert ended.state == RUN_STATE_SUCCEEDED, ended.message
        request = pb.GetInstallationRunLogsRequest(namespace=NS, name=name, run_id=run_id)
        assert stub.GetInstallationRunLogs(request, timeout=10).logs == EXPECTED_LOG
        outputs = stub.ListInstallationRunOutputs(
            pb.ListInstallationRunOutputsRequest(namespace=NS, name=name, run_id=run_id),
            timeout=10,
        ).outputs
        assert [(o.name, o.value.string_value) for o in outputs] == [("result", f"out-{name}")]
        wait_until(
            lambda r=run_id: containers_of(podman_service, r) == [],
            f"the container of run {run_id} to be removed",
            timeout=30,
        )


def test_a_full_disk_during_runs(tmp_path, small_disk, podman_service, podman_host, test_image):
    image = test_image("full-disk", SCRIPT)
    server = Server(tmp_path, small_disk, podman_host)
    try:
        result_bundle_installations(server.stub, REF, image, NS, ["a", "b", "c", "d"])

        # Room again while the server runs: the runs end as their containers did.
        runs = start_runs(server.stub, ["a", "b"])
        filler = fill(small_disk)
        while_full(server.stub, podman_service, runs)
        filler.unlink()
        check_ended(server.stub, podman_service, runs)
        assert any("could not store" in line for line in server.stderr)

        # Room again only after a restart: the new process finishes them from their kept
        # containers, with their true result (not "vanished while the server was down").
        runs = start_runs(server.stub, ["c", "d"])
        filler = fill(small_disk)
        while_full(server.stub, podman_service, runs)
        server.stop()
        filler.unlink()
        server = Server(tmp_path, small_disk, podman_host)
        check_ended(server.stub, podman_service, runs)
    finally:
        with contextlib.suppress(Exception):
            server.stop()
