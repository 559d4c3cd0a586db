"""Safe defaults: no authentication means loopback only, unless --insecure."""

from __future__ import annotations

import io
import logging
import signal

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.auth.exposure import check_exposure, is_loopback
from porter_bundle.auth.tokens import hash_token, parse
from porter_bundle.cli import main
from tests.auth.conftest import NS, creds
from tests.helpers import failure
from tests.test_cli import start


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:3001", True),
        ("127.1.2.3:0", True),
        ("localhost:3001", True),
        ("[::1]:3001", True),
        ("0.0.0.0:3001", False),
        ("[::]:3001", False),
        ("10.0.0.5:3001", False),
        ("example.com:3001", False),
    ],
)
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_non_loopback_without_auth_refuses_to_start(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        code = main(["serve", "--address", "0.0.0.0:0", "--database", f"sqlite:///{tmp_path}/db"])
    assert code == 2
    assert "refusing to listen on 0.0.0.0:0 without authentication" in caplog.text
    assert not (tmp_path / "db").exists()


def test_insecure_warns(caplog):
    with caplog.at_level(logging.WARNING):
        check_exposure("0.0.0.0:3001", authenticated=False, insecure=True)
    assert "WITHOUT AUTHENTICATION" in caplog.text
    check_exposure("0.0.0.0:3001", authenticated=True, insecure=False)
    check_exposure("127.0.0.1:3001", authenticated=False, insecure=False)


def test_bad_token_file_refuses_to_start(tmp_path, caplog):
    bad = tmp_path / "tokens.yaml"
    bad.write_text("- {name: a, token: plain}")
    with caplog.at_level(logging.ERROR):
        code = main(
            [
                "serve",
                "--address",
                "127.0.0.1:0",
                "--token-file",
                str(bad),
                "--database",
                f"sqlite:///{tmp_path}/db",
            ]
        )
    assert code == 2 and "token must be sha256:" in caplog.text


def test_token_commands(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\n"))
    assert main(["token", "hash"]) == 0
    assert capsys.readouterr().out.strip() == hash_token("abc")
    assert (
        main(["token", "new", "ci", "--role", "operator=team-a,team-b", "--role", "viewer=*"]) == 0
    )
    out = capsys.readouterr()
    token = out.out.strip()
    (entry,) = parse(out.err)
    assert entry.principal.name == "ci"
    assert entry.principal.has("operator", "team-b") and entry.principal.has("viewer", "x")
    assert token not in out.err
    assert main(["token", "new", "ci", "--role", "admin=*"]) == 2


def _serve(tmp_path, env_extra, *args):
    return start(tmp_path, {"PORTER_BUNDLE_DATA_DIR": str(tmp_path / "data"), **env_extra}, *args)


def _stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


@pytest.mark.slow
def test_any_address_with_token_file_from_environment(tmp_path, token_file):
    proc, port = _serve(
        tmp_path,
        {"PORTER_BUNDLE_ADDRESS": "0.0.0.0:0", "PORTER_BUNDLE_TOKEN_FILE": str(token_file)},
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            req = pb.ListInstallationsRequest(namespace=NS)
            assert failure(stub.ListInstallations, req).code == grpc.StatusCode.UNAUTHENTICATED
            assert (
                stub.ListInstallations(req, metadata=creds("viewer-a"), timeout=10).total_size == 0
            )
    finally:
        err = _stop(proc)
    assert "WITHOUT AUTHENTICATION" not in err


@pytest.mark.slow
def test_any_address_insecure_starts_with_a_warning(tmp_path):
    proc, port = _serve(tmp_path, {"PORTER_BUNDLE_ADDRESS": "0.0.0.0:0"}, "--insecure")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            stub.ListInstallations(pb.ListInstallationsRequest(), timeout=10)
    finally:
        err = _stop(proc)
    assert "WITHOUT AUTHENTICATION (--insecure)" in err
