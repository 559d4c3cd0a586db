"""Blocks that need a real run, as written against a server with Podman after the README tour's
first two steps (its sets and the hello bundle): docs/api.md's live runs and logs (with the run
ID it captures), then docs/cnab.md's claims and docs/porter.md's legacy outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from porter_bundle.service import Services
from tests.cli.hello import IMAGE, RUN_SCRIPT
from tests.doc_blocks import REPO, block, script_env
from tests.helpers import engine_services, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def services(store, podman_host) -> Services:
    return engine_services(store, podman_host)


def tour_setup() -> str:
    """The README tour up to its install: the sets and the registered hello bundle."""
    tour = block("README.md", "tour")
    return tour.split("\n# 3.", 1)[0] + "\n"


def test_logs_and_watch_block_runs_with_a_real_run_id(
    server, podman_service, test_image, tmp_path: Path
):
    podman_service.podman("tag", test_image("hello", RUN_SCRIPT), IMAGE)
    script = (tour_setup() + block("docs/api.md", "logs")).replace("127.0.0.1:3001", server.target)
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=script_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        # The last command watches until ^C: its first line is the run's final state again.
        wait_until(lambda: sum(" install SUCCEEDED" in line for line in lines) >= 2, timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode in (130, -signal.SIGINT), out + err
    assert "Traceback" not in err and "s3cret" not in out + err
    run_ids = {line.split()[1] for line in lines if " install " in line}
    assert len(run_ids) == 1, out  # every line is about the run the block captured
    assert out.count("install of hello: hello\n") == 2, out  # logs --follow, then logs latest
    after_install(server.target, tmp_path)


def after_install(target: str, tmp_path: Path) -> None:
    """docs/cnab.md's claims block and docs/porter.md's legacy outputs block, on the install
    the logs block made."""
    claims = run(block("docs/cnab.md", "claims"), target, tmp_path)
    assert '"status": "Ready"' in claims and '"source": "CNAB_STATUS_SOURCE_CLAIM_RESULT"' in claims
    assert claims.count('"totalSize": "1"') == 1  # the one successful install claim
    assert '"status": "RUN_STATE_SUCCEEDED"' in claims  # the captured claim's results
    legacy = run(block("docs/porter.md", "legacy-outputs"), target, tmp_path)
    assert '"greeting"' in legacy and "s3cret" not in legacy, legacy


def run(script: str, target: str, tmp_path: Path) -> str:
    """Runs a block against the server at ``target``; its standard output."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("127.0.0.1:3001", target)],
        cwd=REPO,
        env=script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
