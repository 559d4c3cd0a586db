"""Client commands connect with TLS (and a client certificate) and send the bearer token."""

from __future__ import annotations

from pathlib import Path

import pytest

from porter_bundle.cli import main
from porter_bundle.config import Settings
from tests.auth.conftest import (
    NS,
    PRINCIPALS,
    finished_run,
    installation,
    token,
    write_token_file,
)
from tests.auth.pki import Pki, make_pki

DOC = f"""schemaType: CredentialSet
schemaVersion: 1.0.1
namespace: {NS}
name: creds
credentials:
  - name: home
    source: {{env: HOME}}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server_settings(pki, tmp_path) -> Settings:
    return Settings(
        address="127.0.0.1:0",
        token_file=str(write_token_file(tmp_path / "tokens.yaml", PRINCIPALS)),
        tls_cert=str(pki.dir / "server.pem"),
        tls_key=str(pki.dir / "server.key"),
        tls_client_ca=str(pki.dir / "ca.pem"),
    )


def _tls(server, pki: Pki) -> list[str]:
    return [
        "--server",
        f"localhost:{server.port}",
        "--tls-ca",
        str(pki.dir / "ca.pem"),
        "--tls-cert",
        str(pki.dir / "client.pem"),
        "--tls-key",
        str(pki.dir / "client.key"),
    ]


def test_apply_with_token_file_over_mutual_tls(server, pki, tmp_path: Path, capsys):
    doc = tmp_path / "creds.yaml"
    doc.write_text(DOC)
    secret = tmp_path / "token"
    secret.write_text(token("editor-a") + "\n")
    assert main(["apply", str(doc), *_tls(server, pki), "--token-file", str(secret)]) == 0
    assert "created" in capsys.readouterr().out
    # The certificate alone is principal "deployer", which the token file does not know: no roles.
    assert main(["apply", str(doc), *_tls(server, pki)]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().out


def test_logs_with_token_from_environment(server, pki, monkeypatch, capsys):
    server.services.installations.create(installation(NS, "web"))
    run = finished_run(server.services, NS, "web", log=b"hello\n")
    monkeypatch.setenv("PORTER_BUNDLE_TOKEN", token("viewer-a"))
    assert main(["logs", run.id, *_tls(server, pki)]) == 0
    assert capsys.readouterr().out == "hello\n"
    monkeypatch.setenv("PORTER_BUNDLE_TOKEN", token("all-b"))
    assert main(["logs", run.id, *_tls(server, pki)]) == 1  # not visible: NOT_FOUND (refused)
    assert "NOT_FOUND" in capsys.readouterr().err
