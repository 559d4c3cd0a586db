"""docs/registries.md's publish block runs as written against a real registry (only the
registry's address and the repository differ), and the server then pulls what it pushed."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.service import Services
from tests.cli.hello import RUN_SCRIPT
from tests.doc_blocks import block, script_env
from tests.oci import bundle_doc

pytestmark = pytest.mark.slow  # podman push, a registry


@pytest.fixture
def services(store, oci_registry: str) -> Iterator[Services]:
    with RegistryClient(insecure_hosts=frozenset({oci_registry})) as client:
        yield Services.create(store, registry=client)


def test_publish_block_pushes_a_bundle_the_server_pulls(
    server, oci_registry: str, podman_service, test_image, tmp_path: Path
) -> None:
    podman_service.podman("tag", test_image("hello", RUN_SCRIPT), "localhost/hello-installer:v1")
    repository = f"team/hello-{secrets.token_hex(4)}"  # the session's registry is shared
    script = block("docs/registries.md", "publish")
    script = script.replace("127.0.0.1:5000", oci_registry).replace("team/hello", repository)
    (tmp_path / "bundle.json").write_text(
        json.dumps(bundle_doc(f"{oci_registry}/{repository}:installer"))
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=script_env(tmp_path, **podman_service.env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reference, digest = done.stdout.split()
    assert reference == f"{oci_registry}/{repository}:v0.1.0" and digest.startswith("sha256:")

    pulled = subprocess.run(
        ["porter-bundle", "bundles", "pull", reference, "--server", server.target],
        env=script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (pulled.returncode, pulled.stdout) == (0, f"{reference} {digest}\n"), pulled.stderr
