"""docs/operator.md's Porter operator recipe starts as written: v1 API with tokens on one port, the
legacy service unauthenticated on another (only the ports and the token file's path differ)."""

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
from tests.doc_blocks import block
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
    tokens.write_text(
        f"- name: porter-agent\n  token: {hash_token('tok')}\n  roles: {{viewer: '*'}}\n"
    )
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
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "WITHOUT AUTHENTICATION (--legacy-address)" in err
