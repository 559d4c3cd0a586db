"""docs/security.md's reveal block runs as written over TLS with a bearer token (only the
server's address differs), after the README tour has installed hello through the same server:
the sensitive output comes back in clear, and the reveal is audited."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from porter_bundle.auth.tokens import hash_token
from porter_bundle.config import Settings
from porter_bundle.service import Services
from tests.auth.pki import Pki, make_pki
from tests.cli.hello import IMAGE, RUN_SCRIPT
from tests.doc_blocks import REPO, block, script_env
from tests.helpers import engine_services

pytestmark = pytest.mark.slow
TOKEN = "tok-Qm27-reader"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    (tmp_path / "pki").mkdir()
    return make_pki(tmp_path / "pki")


@pytest.fixture
def server_settings(pki: Pki, audit_path: Path, tmp_path: Path) -> Settings:
    tokens = tmp_path / "tokens.yaml"
    roles = "{operator: '*', secret-reader: [dev]}"
    tokens.write_text(f"- name: reader\n  token: {hash_token(TOKEN)}\n  roles: {roles}\n")
    return Settings(
        address="127.0.0.1:0",
        token_file=str(tokens),
        audit_log=str(audit_path),
        tls_cert=str(pki.dir / "server.pem"),
        tls_key=str(pki.dir / "server.key"),
    )


@pytest.fixture
def services(store, podman_host) -> Services:
    return engine_services(store, podman_host)


def test_reveal_block_shows_the_sensitive_output_to_a_secret_reader(
    server, pki: Pki, audit_path: Path, podman_service, test_image, tmp_path: Path
):
    podman_service.podman("tag", test_image("hello", RUN_SCRIPT), IMAGE)
    address = f"localhost:{server.port}"  # the name the test certificate is for
    env = script_env(
        tmp_path,
        TOKEN=TOKEN,
        PORTER_BUNDLE_TOKEN=TOKEN,
        PORTER_BUNDLE_TLS_CA=str(pki.dir / "ca.pem"),
    )
    tour = block("README.md", "tour").split("\n# 4.", 1)[0]  # sets, bundle, install
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(pki.dir / "ca.pem", work / "ca.pem")
    for script, cwd in (
        (tour.replace("127.0.0.1:3001", address), REPO),
        (
            block("docs/security.md", "reveal").replace("porter-bundle.example.com:3001", address),
            work,
        ),
    ):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    outputs = {o["name"]: o for o in json.loads(done.stdout)["outputs"]}
    assert outputs["password"]["sensitive"] and outputs["password"]["value"] == "s3cret"
    (record,) = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert record["principal"] == "reader" and "s3cret" not in audit_path.read_text()
