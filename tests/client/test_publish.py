"""``porter-bundle bundle publish`` against a real registry; pulled back by the client."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.cli import main
from tests.conftest import PushImage
from tests.oci import bundle_doc


def _publish(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["bundles", "publish", *args])
    return code, capsys.readouterr().out


def test_publish_then_pull(
    capsys, oci_registry: str, push_image: PushImage, tmp_path: Path
) -> None:
    repo = f"{oci_registry}/cli/app-{secrets.token_hex(4)}"
    image = push_image(oci_registry, f"{repo.split('/', 1)[1]}:installer")
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle_doc(image)))
    code, out = _publish(capsys, str(path), "--reference", f"{repo}:v1", "--insecure")
    assert code == 0, out
    reference, digest = out.split()
    assert reference == f"{repo}:v1"
    with RegistryClient(insecure_hosts=frozenset({oci_registry})) as client:
        pulled = client.pull(repo, "v1")
    assert pulled.digest == digest
    assert json.loads(pulled.bundle_json)["invocationImages"][0]["image"].startswith(
        f"{repo}@sha256:"
    )


def test_publish_refuses_plain_http_unless_insecure(
    capsys, oci_registry: str, push_image: PushImage, tmp_path: Path
) -> None:
    repo = f"{oci_registry}/cli/app-{secrets.token_hex(4)}"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle_doc(f"{repo}:installer")))
    code, out = _publish(capsys, str(path), "--reference", f"{repo}:v1")
    assert code == 1
    assert f"registry {oci_registry}" in out


def test_publish_lists_schema_violations(capsys, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"name": 1, "invocationImages": []}))
    code, out = _publish(capsys, str(path), "--reference", "127.0.0.1:1/a/b:v1", "--insecure")
    assert code == 1
    assert "bundle_json.name" in out
    assert "bundle_json.version" in out


def test_publish_needs_the_image_in_the_repository(capsys, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle_doc("elsewhere.example.com/img:v1")))
    code, out = _publish(capsys, str(path), "--reference", "127.0.0.1:1/a/b:v1", "--insecure")
    assert code == 1
    assert "must be pushed to the bundle's repository" in out


def test_publish_missing_file(capsys, tmp_path: Path) -> None:
    code, out = _publish(capsys, str(tmp_path / "nope.json"), "--reference", "127.0.0.1:1/a/b:v1")
    assert code == 1
    assert "No such file" in out
