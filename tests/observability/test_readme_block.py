"""README's Observability block runs as written: the server with JSON logs, metrics and an OTLP
endpoint, one call, then the scrape that counts it (only the addresses differ: free ports, and
an OTLP endpoint where nothing listens, so the spans go nowhere)."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_blocks import block, script_env
from tests.helpers import free_port

pytestmark = pytest.mark.slow  # a server process
BIN = Path(sys.executable).with_name("porter-bundle")


def test_the_observability_block_serves_json_logs_and_counts_the_call(tmp_path):
    text = block("README.md", "observability")
    serve, rest = text.split("&", 1)
    argv = shlex.split(serve.replace("\\\n", " "))
    assert argv[:2] == ["porter-bundle", "serve"]
    api, metrics, otlp = free_port(), free_port(), free_port()
    swap = {
        "127.0.0.1:9090": f"127.0.0.1:{metrics}",
        "http://collector:4317": f"http://127.0.0.1:{otlp}",
    }
    args = [swap.get(a, a) for a in argv[2:]]
    assert args != argv[2:] and "--metrics-address" in args and "--otlp-endpoint" in args
    env = {**script_env(tmp_path), "PORTER_BUNDLE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [str(BIN), "serve", *args, "--address", f"127.0.0.1:{api}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"porter-bundle listening on port {api}\n"
        script = rest.split("\n", 1)[1].replace("127.0.0.1:9090", f"127.0.0.1:{metrics}")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**env, "PORTER_BUNDLE_SERVER": f"127.0.0.1:{api}"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        counted = [
            line for line in done.stdout.splitlines() if 'grpc_method="ListInstallations"' in line
        ]
        assert len(counted) == 1 and 'grpc_code="OK"' in counted[0], done.stdout
        assert float(counted[0].rsplit(" ", 1)[1]) == 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines), lines
