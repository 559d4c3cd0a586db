"""The container image as a user runs it: non-root, read-only root file system, healthy.

Built by tools/image.sh (``make image``) in the worktree's podman store; the base is made from
Debian packages with debootstrap, so this runs on a machine without a registry.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import free_port, wait_until
from tests.image.images import Images

pytestmark = pytest.mark.slow


def test_serve_runs_as_non_root_on_a_read_only_root_and_passes_health(images: Images):
    port = free_port()
    name = f"pb-serve-{uuid.uuid4().hex[:8]}"
    images.podman(
        "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
        "--network", "host", "--env", "PORTER_BUNDLE_DATA_DIR=/tmp/data",
        images.server, "serve", "--address", f"127.0.0.1:{port}",
    )  # fmt: skip
    try:

        def healthy() -> bool:
            state = images.podman("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            if state != "true":
                logs = images.podman("logs", name, check=False)
                raise AssertionError(f"the server exited: {logs.stdout}{logs.stderr}")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    resp = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
            except grpc.RpcError:
                return False
            return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

        wait_until(healthy, "the server in the image to pass its health check", timeout=60)
        ids = images.podman(
            "exec", name, "python3", "-c", "import os; print(os.getuid(), os.getgid())"
        )
        assert ids.stdout.split() == ["65532", "0"]
        # The root file system is read-only; /tmp is not.
        probe = images.podman(
            "exec", name, "sh", "-c", "touch /opt/x; echo $?; touch /tmp/x; echo $?"
        )
        assert probe.stdout.split() == ["1", "0"]
    finally:
        images.podman("rm", "-f", "-t", "2", name, check=False)


def test_no_compiler_and_the_agent_entrypoint(images: Images):
    found = images.podman(
        "run", "--rm", "--entrypoint", "sh", images.server, "-c",
        "for c in gcc cc c++ clang make; do command -v $c; done; exit 0",
    )  # fmt: skip
    assert found.stdout.strip() == ""
    user = images.podman(
        "image", "inspect", "-f", "{{.Config.User}} {{json .Config.Entrypoint}}", images.agent
    )
    assert user.stdout.strip() == '65532:0 ["porter-bundle","agent"]'
    # The agent target is the operator's: an unknown command exits 1 in Porter's words.
    done = images.podman("run", "--rm", images.agent, "bogus", check=False)
    assert done.returncode == 1
    assert 'Error: unknown command "bogus" for "porter"' in done.stderr
