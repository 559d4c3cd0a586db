"""The README's API examples run as written against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
REPO = README.parent


def examples() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- examples:begin -->\s*```sh\n(.*?)```\s*<!-- examples:end -->", text, re.S
    )
    assert block, "README has no examples block"
    return block.group(1)


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "buf").exists(), reason="needs make venv (buf)")
def test_readme_examples_run_against_a_server(server):
    script = examples().replace("127.0.0.1:3001", server.target)
    assert script.count(server.target) >= 3
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "porter.bundle.v1.PorterBundle" in out
    assert '"redacted": true' in out and "s3cret" not in out
    assert '"totalSize": "1"' in out
    assert "NOT_FOUND: no successful run yet" in out
    assert '"status": "SERVING"' in out
