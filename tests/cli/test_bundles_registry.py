"""``bundles publish`` to a real OCI registry, then ``bundles pull`` by the server."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.service import Services
from tests.conftest import PushImage
from tests.oci import bundle_doc


@pytest.fixture
def services(store, oci_registry: str) -> Iterator[Services]:
    with RegistryClient(insecure_hosts=frozenset({oci_registry})) as client:
        yield Services.create(store, registry=client)


def test_publish_then_pull_through_the_server(
    cli, oci_registry: str, push_image: PushImage, tmp_path: Path
) -> None:
    repo = f"{oci_registry}/cli/pull-{secrets.token_hex(4)}"
    image = push_image(oci_registry, f"{repo.split('/', 1)[1]}:installer")
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle_doc(image)))
    code, out, err = cli("bundles", "publish", str(path), "--reference", f"{repo}:v1", "--insecure")
    assert code == 0, out + err
    reference, digest = out.split()

    code, out, err = cli("bundles", "pull", reference)
    assert (code, out) == (0, f"{reference} {digest}\n"), err
    code, out, _ = cli("bundles", "list", "-o", "yaml")
    assert "source: BUNDLE_SOURCE_PULLED" in out and f"digest: {digest}" in out
    code, out, _ = cli("bundles", "show", reference)
    assert "Source:      pulled" in out

    code, _, err = cli("bundles", "pull", f"{repo}:missing")
    assert code == 1 and "NOT_FOUND" in err
