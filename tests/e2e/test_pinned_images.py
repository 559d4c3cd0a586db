"""End to end: a run executes the invocation image the bundle pins (real docker-registry, real
podman push and pull, real server and SQLite).

As Porter does: a pulled bundle's images are relocated to the repository it was pulled from, by
the digest its image index lists (cnab-to-oci's relocation map, given to the container as
/cnab/app/relocation-mapping.json); a moved image tag changes nothing; digests that disagree
refuse the run."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter_bundle.bundles import layout
from porter_bundle.bundles.publish import push_layout
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.service import Services
from tests.conftest import TestImage
from tests.engine import Engine
from tests.helpers import ended_run, failure
from tests.oci import engine_services

pytestmark = pytest.mark.slow
NS = "dev"
ORIGINAL = "example.invalid/orig/installer:v0.1.0"
ORIGINAL_DB = "example.invalid/orig/db:1"

SCRIPT = """#!/bin/sh
echo "ran image {which}"
mkdir -p /cnab/app/outputs
if [ -f /cnab/app/relocation-mapping.json ]; then
  cp /cnab/app/relocation-mapping.json /cnab/app/outputs/mapping
else
  printf none > /cnab/app/outputs/mapping
fi
"""


@pytest.fixture
def services(store, podman_host: str, oci_registry: str) -> Iterator[Services]:
    yield from engine_services(store, podman_host, oci_registry)


@pytest.fixture
def client(oci_registry: str) -> Iterator[RegistryClient]:
    with RegistryClient(insecure_hosts=frozenset({oci_registry})) as c:
        yield c


@dataclass(frozen=True)
class Repo:
    """A fresh repository in the session's registry, and how to push images into it."""

    host: str
    repository: str
    push: Callable[[str, str], layout.Descriptor]
    """push(tag, which) -> the manifest descriptor of an image printing ``ran image <which>``."""


@pytest.fixture
def repo(
    oci_registry: str, podman_service: Engine, test_image: TestImage, client: RegistryClient
) -> Repo:
    repository = f"{oci_registry}/e2e/pinned-{secrets.token_hex(4)}"

    def push(tag: str, which: str) -> layout.Descriptor:
        local = test_image("pinned", SCRIPT.format(which=which))
        podman_service.podman("push", "--tls-verify=false", local, f"{repository}:{tag}")
        return client.manifest_descriptor(repository, tag)

    return Repo(oci_registry, repository, push)


def pinned(image: str, found: layout.Descriptor) -> dict[str, Any]:
    return {
        "imageType": "docker",
        "image": image,
        "contentDigest": found.digest,
        "size": found.size,
        "mediaType": found.media_type,
    }


def bundle(invocation: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": "v1.2.0",
        "name": "pinned",
        "version": "0.1.0",
        "invocationImages": [invocation],
        "definitions": {"text": {"type": "string"}},
        "outputs": {"mapping": {"definition": "text", "path": "/cnab/app/outputs/mapping"}},
        **extra,
    }


def install(stub, repository: str, tag: str) -> Any:
    inst = Installation(
        namespace=NS, name="app", bundle=BundleReference(repository=repository, tag=tag)
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    return stub.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name="app", action="install"))


def finished(stub, run_id: str) -> tuple[Any, str, dict[str, str]]:
    run = ended_run(stub, NS, "app", run_id, timeout=120)
    logs = stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name="app", run_id=run_id)
    ).logs
    outputs = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name="app", run_id=run_id)
    ).outputs
    return run, logs, {o.name: o.value.string_value for o in outputs}


def test_a_relocated_bundle_runs_the_image_its_index_lists(
    stub, repo: Repo, client: RegistryClient
) -> None:
    # bundle.json names images in a registry that does not exist; the index lists their
    # copies in the repository the bundle is pulled from (what `porter copy` leaves).
    found = repo.push("installer", "relocated")
    db = repo.push("db", "db")
    doc = bundle(
        pinned(ORIGINAL, found),
        images={"db": {**pinned(ORIGINAL_DB, db), "description": "the database"}},
    )
    push_layout(client, repo.repository, "v0.1.0", layout.build(doc))

    run, logs, outputs = finished(stub, install(stub, repo.repository, "v0.1.0").run.id)

    assert run.state == RUN_STATE_SUCCEEDED, (run, logs)
    assert "ran image relocated" in logs
    assert run.invocation_image == f"{repo.repository}@{found.digest}"
    assert run.invocation_image_digest == found.digest
    expected = {
        ORIGINAL: f"{repo.repository}@{found.digest}",
        ORIGINAL_DB: f"{repo.repository}@{db.digest}",
    }
    assert json.loads(outputs["mapping"]) == expected
    # Porter's format: indented by four spaces.
    assert outputs["mapping"].startswith('{\n    "example.invalid/orig/db:1": ')
    got = stub.GetBundle(pb.GetBundleRequest(reference=f"{repo.repository}:v0.1.0")).bundle
    assert dict(got.relocation_map) == expected


def test_a_moved_image_tag_still_runs_the_pinned_digest(
    stub, repo: Repo, client: RegistryClient
) -> None:
    found = repo.push("installer", "original")
    doc = bundle(pinned(f"{repo.repository}:installer", found))
    push_layout(client, repo.repository, "v0.1.0", layout.build(doc))
    moved = repo.push("installer", "moved")  # another image under the same tag
    assert moved.digest != found.digest

    run, logs, outputs = finished(stub, install(stub, repo.repository, "v0.1.0").run.id)

    assert run.state == RUN_STATE_SUCCEEDED, (run, logs)
    assert "ran image original" in logs and "moved" not in logs
    assert run.invocation_image == f"{repo.repository}@{found.digest}"
    assert run.invocation_image_digest == found.digest
    mapping = json.loads(outputs["mapping"])
    assert mapping == {f"{repo.repository}:installer": f"{repo.repository}@{found.digest}"}


def test_a_registered_bundle_runs_its_content_digest_not_its_tag(stub, repo: Repo) -> None:
    found = repo.push("installer", "original")
    repo.push("installer", "moved")
    doc = bundle(pinned(f"{repo.repository}:installer", found))
    reference = f"{repo.repository}:v0.2.0"
    stub.CreateBundle(pb.CreateBundleRequest(reference=reference, bundle_json=json.dumps(doc)))

    run, logs, outputs = finished(stub, install(stub, repo.repository, "v0.2.0").run.id)

    assert run.state == RUN_STATE_SUCCEEDED, (run, logs)
    assert "ran image original" in logs
    assert run.invocation_image_digest == found.digest
    assert outputs["mapping"] == "none"  # nothing was relocated


def test_an_index_that_contradicts_the_content_digest_is_refused(
    stub, repo: Repo, client: RegistryClient
) -> None:
    listed = repo.push("installer", "listed")
    other = repo.push("other", "other")
    # bundle.json pins `other`; its index lists `listed`.
    config = layout.canonical_bundle_json(bundle(pinned(ORIGINAL, other)))
    manifest = layout.config_manifest(config)
    index = layout.bundle_index(bundle(pinned(ORIGINAL, listed)), manifest)
    push_layout(client, repo.repository, "v0.1.0", layout.Layout(config, manifest, index))

    err = failure(install, stub, repo.repository, "v0.1.0")

    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == "IMAGE_DIGEST_MISMATCH"
    assert other.digest in err.message and listed.digest in err.message
    runs = stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace=NS, name="app"))
    assert list(runs.runs) == []


def test_an_image_reference_that_contradicts_the_content_digest_is_refused(
    stub, repo: Repo
) -> None:
    found = repo.push("installer", "original")
    other = repo.push("other", "other")
    image = pinned(f"{repo.repository}@{found.digest}", other)
    reference = f"{repo.repository}:v0.3.0"
    stub.CreateBundle(
        pb.CreateBundleRequest(reference=reference, bundle_json=json.dumps(bundle(image)))
    )

    err = failure(install, stub, repo.repository, "v0.3.0")

    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == "IMAGE_DIGEST_MISMATCH"
