"""Publishing with component images against a real docker-registry (as cnab-to-oci's fixup)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from porter_bundle.bundles.publish import publish
from porter_bundle.bundles.registry import RegistryClient, RegistryNotFound
from porter_bundle.errors import FailedPrecondition, Unavailable
from tests.conftest import PushImage
from tests.oci import bundle_doc


@pytest.fixture
def client(oci_registry: str) -> Iterator[RegistryClient]:
    with RegistryClient(insecure_hosts=frozenset({oci_registry})) as c:
        yield c


@pytest.fixture
def repository(oci_registry: str, push_image: PushImage) -> str:
    repo = f"team/components-{secrets.token_hex(4)}"
    push_image(oci_registry, f"{repo}:installer")
    return f"{oci_registry}/{repo}"


def test_component_images_named_by_tag_are_resolved_and_mounted(
    client: RegistryClient, repository: str, oci_registry: str, push_image: PushImage
) -> None:
    elsewhere = push_image(oci_registry, f"team/db-{secrets.token_hex(4)}:1")
    doc = bundle_doc(
        f"{repository}:installer",
        images={
            "same": {"imageType": "docker", "image": f"{repository}:installer"},
            "db": {"imageType": "docker", "image": elsewhere, "description": "the database"},
        },
    )
    pushed = publish(client, json.dumps(doc).encode(), f"{repository}:v0.1.0")

    images = json.loads(pushed.bundle_json)["images"]
    db = client.manifest_descriptor(elsewhere.rpartition(":")[0], "1")
    assert images["db"] == {
        "imageType": "docker",
        "image": elsewhere,  # kept as written, as cnab-to-oci does
        "description": "the database",
        "contentDigest": db.digest,
        "size": db.size,
        "mediaType": db.media_type,
    }
    # The bundle's repository has the mounted image, and a pull relocates both components.
    assert client.manifest_descriptor(repository, db.digest) == db
    pulled = client.pull(repository, "v0.1.0")
    assert pulled.relocation_map[elsewhere] == f"{repository}@{db.digest}"
    assert pulled.relocation_map[f"{repository}:installer"] == (
        f"{repository}@{images['same']['contentDigest']}"
    )
    entries = json.loads(pulled.index)["manifests"]
    assert [e["annotations"].get("io.cnab.component.name") for e in entries[2:]] == ["db", "same"]


def test_a_missing_component_image_is_named(client: RegistryClient, repository: str) -> None:
    missing = f"{repository}:nope"
    doc = bundle_doc(
        f"{repository}:installer", images={"db": {"imageType": "docker", "image": missing}}
    )
    with pytest.raises(FailedPrecondition) as caught:
        publish(client, json.dumps(doc).encode(), f"{repository}:v0.1.0")
    assert caught.value.reason == "NOT_PUBLISHABLE"
    assert f"component image 'db' ({missing})" in caught.value.message
    assert caught.value.metadata["image"] == missing
    with pytest.raises(RegistryNotFound):
        client.resolve(repository, "v0.1.0")  # nothing was pushed


def test_a_component_on_another_registry_is_named(client: RegistryClient, repository: str) -> None:
    other = "127.0.0.1:1/team/db:1"
    doc = bundle_doc(
        f"{repository}:installer", images={"db": {"imageType": "docker", "image": other}}
    )
    with pytest.raises(Unavailable) as caught:
        publish(client, json.dumps(doc).encode(), f"{repository}:v0.1.0")
    # The registry's state keeps its status; the message says which image needed it.
    assert caught.value.reason == "REGISTRY_UNAVAILABLE"
    assert f"component image 'db' ({other})" in caught.value.message
