"""docs/operator.md's Porter operator recipe runs as written: the agent's token made into the token
file, then the server: v1 API with tokens on one port (the agent's token works in its namespaces),
the legacy service unauthenticated on another (only the ports and the token file's path differ)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from installation.v1alpha1 import installation_pb2 as legacy_pb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle.auth.tokens import hash_token
from tests.doc_blocks import block, script_env
from tests.helpers import free_port

pytestmark = pytest.mark.slow  # a server process
BIN = Path(sys.executable).with_name("porter-bundle")


def recipe() -> list[str]:
    return shlex.split(block("docs/operator.md", "operator-serve").replace("\\\n", " "))


def test_the_operator_recipe_starts_and_serves_both_listeners(tmp_path):
    argv = recipe()
    assert argv[:2] == ["porter-bundle", "serve"]
    api, legacy = free_port(), free_port()
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"- name: ci\n  token: {hash_token('tok')}\n  roles: {{viewer: '*'}}\n")
    made = subprocess.run(  # step 3's block: the agent's token, its entry into the token file
        ["bash", "-euo", "pipefail", "-c",
         block("docs/operator.md", "agent-token").replace("/etc/porter-bundle/tokens.yaml", str(tokens))],
        cwd=tmp_path, env=script_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    agent_token = (tmp_path / "agent.token").read_text().strip()
    swap = {"0.0.0.0:3002": f"0.0.0.0:{api}", "0.0.0.0:3001": f"0.0.0.0:{legacy}",
            "/etc/porter-bundle/tokens.yaml": str(tokens)}  # fmt: skip
    args = [swap.get(a, a) for a in argv[2:]]
    env = {**os.environ, "PORTER_BUNDLE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [str(BIN), "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines == [f"porter-bundle legacy listening on port {legacy}\n",
                         f"porter-bundle listening on port {api}\n"], proc.stderr.read() if proc.poll() is not None else lines  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{legacy}") as channel:
            resp = porter_pb2_grpc.PorterStub(channel).ListInstallations(
                legacy_pb.ListInstallationsRequest(), timeout=10
            )
            assert list(resp.installation) == []
        with grpc.insecure_channel(f"127.0.0.1:{api}") as channel:
            with pytest.raises(grpc.RpcError) as anonymous:
                porter_bundle_pb2_grpc.PorterBundleStub(channel).ListInstallations(
                    pb.ListInstallationsRequest(), timeout=10
                )
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            listed = porter_bundle_pb2_grpc.PorterBundleStub(channel).ListInstallations(
                pb.ListInstallationsRequest(namespace="team-a"),
                metadata=[("authorization", f"Bearer {agent_token}")],
                timeout=10,
            )
            assert list(listed.installations) == []
            with pytest.raises(grpc.RpcError) as elsewhere:  # operator of team-a and team-b only
                porter_bundle_pb2_grpc.PorterBundleStub(channel).ListInstallations(
                    pb.ListInstallationsRequest(namespace="team-c"),
                    metadata=[("authorization", f"Bearer {agent_token}")],
                    timeout=10,
                )
            assert elsewhere.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "WITHOUT AUTHENTICATION (--legacy-address)" in err
