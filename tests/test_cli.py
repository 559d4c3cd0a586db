"""The porter-bundle command: flags, environment, a real server process and SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.cli import main
from tests.oci import RUN_SCRIPT, bundle_doc, publish_doc

BIN = Path(sys.executable).with_name("porter-bundle")


def test_serve_help_explains_flags_and_env(capsys):
    try:
        main(["serve", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for text in (
        "--address",
        "--database",
        "PORTER_BUNDLE_ADDRESS",
        "PORTER_BUNDLE_DATABASE",
        "127.0.0.1:3001",
    ):
        assert text in out


def start(
    tmp_path: Path, env_extra: dict[str, str], *args: str
) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, **env_extra}
    proc = subprocess.Popen(
        [str(BIN), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on port (\d+)", line)
    assert match, (
        f"no port announced: {line!r} / {proc.stderr.read() if proc.poll() is not None else ''}"
    )
    return proc, int(match.group(1))


@pytest.mark.slow
def test_default_database_lives_in_data_dir_and_sigterm_stops_cleanly(tmp_path: Path):
    data = tmp_path / "data-dir"
    proc, port = start(
        tmp_path, {"PORTER_BUNDLE_DATA_DIR": str(data), "PORTER_BUNDLE_ADDRESS": "127.0.0.1:0"}
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            listed = porter_bundle_pb2_grpc.PorterBundleStub(ch).ListInstallations(
                pb.ListInstallationsRequest(), timeout=10
            )
            assert listed.total_size == 0
        assert (data / "porter-bundle.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err


@pytest.mark.slow
def test_database_flag_wins(tmp_path: Path):
    db = tmp_path / "explicit.db"
    proc, _ = start(tmp_path, {}, "--address", "127.0.0.1:0", "--database", f"sqlite:///{db}")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0 and db.exists()


def test_config_file_reaches_the_server_and_a_flag_beats_it(tmp_path: Path):
    data = tmp_path / "from-file"
    config = tmp_path / "porter-bundle.yaml"
    config.write_text(f"address: 127.0.0.1:1\ndata_dir: {data}\nworkers: 2\n")
    proc, port = start(tmp_path, {"PORTER_BUNDLE_CONFIG": str(config)}, "--address", "127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        assert port != 1 and (data / "porter-bundle.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_bad_config_file_exits_2_naming_it(tmp_path: Path):
    config = tmp_path / "porter-bundle.yaml"
    config.write_text("workers: none\n")
    done = subprocess.run(
        [str(BIN), "serve", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "workers (--workers / PORTER_BUNDLE_WORKERS)" in done.stderr


# --- the server pulls bundles with the registry settings it is given ---------------------------


@pytest.mark.slow
def test_serve_pulls_with_insecure_registry_and_docker_config(
    tmp_path: Path, oci_registry_with_auth, podman_service, test_image
):
    login = oci_registry_with_auth
    repository = f"{login.host}/cli/served-{secrets.token_hex(4)}"
    creds = f"{login.user}:{login.password}"
    image = f"{repository}:installer"
    local = test_image("hello-oci", RUN_SCRIPT)
    podman_service.podman("push", "--tls-verify=false", "--creds", creds, local, image)
    auths = {login.host: (login.user, login.password)}
    with RegistryClient(insecure_hosts=frozenset({login.host}), auths=auths) as client:
        published = publish_doc(login.host, f"{repository}:v1", bundle_doc(image), client=client)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"auths": {login.host: {"auth": base64.b64encode(creds.encode()).decode()}}})
    )
    env = {"PORTER_BUNDLE_DATA_DIR": str(tmp_path / "data")}
    for args, expected in (
        (("--registry-config", str(config)), grpc.StatusCode.UNAVAILABLE),  # HTTPS refused
        (("--insecure-registry", login.host), grpc.StatusCode.UNAUTHENTICATED),
        (("--insecure-registry", login.host, "--registry-config", str(config)), None),
    ):
        proc, port = start(tmp_path, env, "--address", "127.0.0.1:0", *args)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
                request = pb.PullBundleRequest(reference=f"{repository}:v1")
                if expected is None:
                    assert stub.PullBundle(request, timeout=30).bundle.digest == published.digest
                else:
                    with pytest.raises(grpc.RpcError) as caught:
                        stub.PullBundle(request, timeout=30)
                    assert caught.value.code() == expected, caught.value
                    assert login.password not in (caught.value.details() or "")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
