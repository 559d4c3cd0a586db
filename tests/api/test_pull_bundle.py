"""PullBundle, and installations whose bundles live in an OCI registry (fake executor)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.bundle_pb2 import BUNDLE_SOURCE_PULLED, Bundle
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter_bundle import store as db
from porter_bundle.bundles import layout
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.executor import ContainerResult
from porter_bundle.service import Services
from tests.conftest import PushImage
from tests.fake_executor import FakeExecutor
from tests.helpers import ended_run, failure
from tests.oci import bundle_doc, publish_doc
from tests.registry_proxy import Fault, RegistryProxy

NS = "dev"


@pytest.fixture
def fake() -> FakeExecutor:
    fake = FakeExecutor()
    fake.behaviour = lambda spec: ContainerResult(exit_code=0, outputs={"said": b"hello"})
    return fake


@pytest.fixture
def registry_client(registry_proxy: RegistryProxy) -> Iterator[RegistryClient]:
    with RegistryClient(insecure_hosts=frozenset({registry_proxy.host})) as client:
        yield client


@pytest.fixture
def services(store, fake: FakeExecutor, registry_client: RegistryClient) -> Services:
    return Services.create(store, executor=lambda: fake, registry=registry_client)


@pytest.fixture
def repository(registry_proxy: RegistryProxy, push_image: PushImage) -> str:
    """A repository holding the invocation image (tag ``installer``), named through the proxy."""
    repo = f"team/app-{secrets.token_hex(4)}"
    push_image(registry_proxy.upstream, f"{repo}:installer")
    return f"{registry_proxy.host}/{repo}"


def publish(repository: str, tag: str, **changes: object) -> tuple[str, bytes]:
    """Publishes the test bundle as ``repository:tag``: (digest, bundle.json)."""
    host = repository.split("/", 1)[0]
    doc = bundle_doc(f"{repository}:installer", **changes)
    pushed = publish_doc(host, f"{repository}:{tag}", doc)
    return pushed.digest, pushed.bundle_json


def pull(stub, reference: str) -> pb.PullBundleResponse:
    return stub.PullBundle(pb.PullBundleRequest(reference=reference))


def bundles(stub) -> dict[str, tuple[str, str, str, str, int]]:
    listed = stub.ListBundles(pb.ListBundlesRequest()).bundles
    return {b.reference: (b.tag, b.version, b.digest, b.name, b.source) for b in listed}


def test_pull_by_tag_stores_it_by_digest(stub, repository: str, registry_proxy) -> None:
    digest, raw = publish(repository, "v0.1.0")
    registry_proxy.reset()
    bundle = pull(stub, f"{repository}:v0.1.0").bundle
    assert (bundle.reference, bundle.repository, bundle.tag) == (
        f"{repository}:v0.1.0",
        repository,
        "v0.1.0",
    )
    assert (bundle.digest, bundle.bundle_json.encode()) == (digest, raw)
    assert bundle.bundle_json_digest == layout.digest_of(raw)
    assert (bundle.name, bundle.version, bundle.source) == (
        "hello-oci",
        "0.1.0",
        BUNDLE_SOURCE_PULLED,
    )
    assert bundles(stub) == {
        f"{repository}:v0.1.0": ("v0.1.0", "0.1.0", digest, "hello-oci", BUNDLE_SOURCE_PULLED),
        f"{repository}@{digest}": ("", "0.1.0", digest, "hello-oci", BUNDLE_SOURCE_PULLED),
    }
    got = stub.GetBundle(pb.GetBundleRequest(reference=f"{repository}@{digest}")).bundle
    assert got.bundle_json.encode() == raw


def test_the_cache(stub, repository: str, registry_proxy: RegistryProxy) -> None:
    digest, _ = publish(repository, "v0.1.0")
    pull(stub, f"{repository}:v0.1.0")
    registry_proxy.reset()
    # A digest already stored: no network at all.
    assert pull(stub, f"{repository}@{digest}").bundle.digest == digest
    assert registry_proxy.requests() == []
    # A tag: one HEAD to notice a move, nothing else while the digest is known.
    assert pull(stub, f"{repository}:v0.1.0").bundle.digest == digest
    assert [s.method for s in registry_proxy.requests(contains="/v2/")] == ["HEAD"]


def test_pull_by_digest_first(stub, repository: str) -> None:
    digest, _ = publish(repository, "v0.1.0")
    bundle = pull(stub, f"{repository}@{digest}").bundle
    assert (bundle.reference, bundle.tag, bundle.digest) == (f"{repository}@{digest}", "", digest)
    assert list(bundles(stub)) == [f"{repository}@{digest}"]


def test_a_moved_tag_is_noticed(stub, repository: str) -> None:
    first, _ = publish(repository, "v0.1.0")
    assert pull(stub, f"{repository}:v0.1.0").bundle.digest == first
    second, _ = publish(repository, "v0.1.0", description="moved")
    assert second != first
    moved = pull(stub, f"{repository}:v0.1.0").bundle
    assert (moved.digest, moved.description) == (second, "moved")
    listed = bundles(stub)
    assert listed[f"{repository}:v0.1.0"][2] == second
    assert listed[f"{repository}@{first}"][2] == first
    assert listed[f"{repository}@{second}"][2] == second


def wait_final(stub, name: str, run_id: str):
    return ended_run(stub, NS, name, run_id)


def create(stub, name: str, bundle: BundleReference) -> Installation:
    inst = Installation(namespace=NS, name=name, bundle=bundle)
    return stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation


def run(stub, name: str, action: str):
    started = stub.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=name, action=action))
    return wait_final(stub, name, started.run.id)


def test_installations_resolve_through_the_registry(
    stub, repository: str, fake: FakeExecutor, registry_proxy: RegistryProxy
) -> None:
    first, _ = publish(repository, "v0.1.0")
    # Nothing pulled yet: creating the installations resolves (pulls) their references.
    create(stub, "pinned", BundleReference(repository=repository, digest=first))
    create(stub, "tagged", BundleReference(repository=repository, tag="v0.1.0"))
    create(stub, "versioned", BundleReference(repository=repository, version="0.1.0"))
    for name in ("pinned", "tagged", "versioned"):
        done = run(stub, name, "install")
        assert (done.state, done.bundle_digest) == (RUN_STATE_SUCCEEDED, first)
    assert fake.specs[0].env["CNAB_ACTION"] == "install"

    second, _ = publish(repository, "v0.1.0", description="moved")
    registry_proxy.reset()
    pinned = run(stub, "pinned", "upgrade")
    assert (pinned.state, pinned.bundle_digest) == (RUN_STATE_SUCCEEDED, first)
    assert registry_proxy.requests() == []  # pinned by a stored digest: no network
    tagged = run(stub, "tagged", "upgrade")
    assert (tagged.state, tagged.bundle_digest) == (RUN_STATE_SUCCEEDED, second)
    assert run(stub, "versioned", "upgrade").bundle_digest == second


def test_update_installation_resolves_the_new_reference(stub, repository: str) -> None:
    publish(repository, "v0.1.0")
    inst = create(stub, "app", BundleReference(repository=repository, tag="v0.1.0"))
    inst.bundle.tag = "v9.9.9"
    err = failure(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(installation=inst, update_mask={"paths": ["bundle"]}),
    )
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert "MANIFEST_UNKNOWN" in err.message


def test_unknown_tag_and_repository(stub, repository: str, registry_proxy) -> None:
    publish(repository, "v0.1.0")
    for reference in (f"{repository}:v9.9.9", f"{registry_proxy.host}/team/nobody:v1"):
        err = failure(pull, stub, reference)
        assert err.code == grpc.StatusCode.NOT_FOUND, err
        assert err.metadata["registry"] == registry_proxy.host
    err = failure(create, stub, "app", BundleReference(repository=repository, tag="v9.9.9"))
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert stub.ListInstallations(pb.ListInstallationsRequest(namespace=NS)).installations == []
    assert bundles(stub) == {}


@pytest.mark.parametrize("status", [500, 503])
def test_registry_failures_are_unavailable(
    stub, repository: str, registry_proxy: RegistryProxy, status: int
) -> None:
    publish(repository, "v0.1.0")
    registry_proxy.faults.append(Fault(status))
    err = failure(pull, stub, f"{repository}:v0.1.0")
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert registry_proxy.host in err.message
    assert err.reason == "REGISTRY_UNAVAILABLE"


def test_unreachable_registry(stub) -> None:
    err = failure(pull, stub, "127.0.0.1:1/team/app:v1")
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1:1" in err.message


def test_auth_refusals_carry_the_registry_words(
    stub, repository: str, registry_proxy: RegistryProxy
) -> None:
    publish(repository, "v0.1.0")
    registry_proxy.forbidden_repos.add(repository.split("/", 1)[1])
    err = failure(pull, stub, f"{repository}:v0.1.0")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert "requested access to the resource is denied" in err.message
    registry_proxy.forbidden_repos.clear()
    registry_proxy.anonymous = False
    registry_proxy.revoke_tokens()
    err = failure(pull, stub, f"{repository}:v0.1.0")
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert "anonymous access is not allowed" in err.message
    assert bundles(stub) == {}


@pytest.mark.parametrize("corrupt", ["/blobs/", "/manifests/sha256"])
def test_digest_mismatch_stores_nothing(
    stub, repository: str, registry_proxy: RegistryProxy, corrupt: str
) -> None:
    publish(repository, "v0.1.0")
    registry_proxy.corrupt = corrupt
    err = failure(pull, stub, f"{repository}:v0.1.0")
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not match" in err.message
    assert bundles(stub) == {}


def test_an_image_is_not_a_bundle(stub, repository: str) -> None:
    err = failure(pull, stub, f"{repository}:installer")
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "not a CNAB bundle" in err.message
    assert bundles(stub) == {}


def test_a_bundle_breaking_the_schema(
    stub, repository: str, registry_client: RegistryClient
) -> None:
    """Pushed without validation (as another tool might): the pull lists the violations."""
    valid_digest, raw = publish(repository, "v0.1.0")
    doc = json.loads(raw)
    doc["name"] = 42
    del doc["version"]
    built = layout.build(doc)
    registry_client.push_blob(repository, built.config)
    registry_client.push_manifest(
        repository,
        layout.digest_of(built.config_manifest),
        built.config_manifest,
        layout.OCI_MANIFEST,
    )
    registry_client.push_manifest(repository, "broken", built.index, layout.OCI_INDEX)
    err = failure(pull, stub, f"{repository}:broken")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(err.violations) == {"bundle_json.name", "bundle_json.version"}
    assert bundles(stub) == {}
    assert valid_digest


def test_pull_needs_a_reference(stub) -> None:
    err = failure(pull, stub, "no-tag-here")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_registered_bundle_wins(stub, repository: str, registry_proxy: RegistryProxy) -> None:
    digest, raw = publish(repository, "v0.1.0")
    registered = stub.CreateBundle(
        pb.CreateBundleRequest(reference=f"{repository}:v0.1.0", bundle_json=raw.decode())
    ).bundle
    registry_proxy.reset()
    got = pull(stub, f"{repository}:v0.1.0").bundle
    assert (got.source, got.digest) == (registered.source, layout.digest_of(raw))
    by_json_digest = pull(stub, f"{repository}@{layout.digest_of(raw)}").bundle
    assert by_json_digest.reference == f"{repository}:v0.1.0"
    assert registry_proxy.requests() == []
    assert digest != registered.digest


def test_apply_resolves_through_the_registry_and_upgrades_a_moved_tag(
    stub, repository: str
) -> None:
    """Porter's `installations apply`: the document's bundle is pulled; a moved tag upgrades."""
    first, _ = publish(repository, "v0.1.0")
    document = (
        "schemaType: Installation\n"
        "schemaVersion: 1.0.2\n"
        f"namespace: {NS}\n"
        "name: applied\n"
        f"bundle:\n  repository: {repository}\n  version: 0.1.0\n"
    ).encode()
    done = stub.ApplyInstallation(pb.ApplyInstallationRequest(document=document))
    assert done.decision == pb.APPLY_DECISION_INSTALL
    assert wait_final(stub, "applied", done.run.id).bundle_digest == first
    second, _ = publish(repository, "v0.1.0", description="moved")
    again = stub.ApplyInstallation(pb.ApplyInstallationRequest(document=document))
    assert again.decision == pb.APPLY_DECISION_UPGRADE, again.reason
    assert wait_final(stub, "applied", again.run.id).bundle_digest == second


@pytest.mark.parametrize(
    ("version", "tag"), [("0.4.0+build.7", "v0.4.0_build.7"), ("0.3", "v0.3.0"), ("v1", "v1.0.0")]
)
def test_a_version_resolves_to_the_tag_porter_pulls(
    stub, repository: str, version: str, tag: str
) -> None:
    digest, _ = publish(repository, tag, version=version)
    inst = Installation(
        namespace=NS, name="app", bundle=BundleReference(repository=repository, version=version)
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    run = stub.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name="app", action="install"))
    assert run.run.bundle_reference == f"{repository}:{tag}"
    assert run.run.bundle_digest == digest


def test_a_tag_and_a_digest_the_digest_wins(stub, repository: str) -> None:
    digest, _ = publish(repository, "v0.1.0")
    publish(repository, "v0.2.0", version="0.2.0")
    # The tag names another bundle: Porter pulls by the digest and ignores the tag.
    bundle = pull(stub, f"{repository}:v0.2.0@{digest}").bundle
    assert (bundle.reference, bundle.digest, bundle.version) == (
        f"{repository}@{digest}",
        digest,
        "0.1.0",
    )


def test_a_bundle_pulled_before_relocation_maps_were_recorded_gets_its_map(
    stub, store, repository: str, fake: FakeExecutor, registry_proxy: RegistryProxy
) -> None:
    digest, raw = publish(repository, "v0.1.0")
    pull(stub, f"{repository}:v0.1.0")
    references = (f"{repository}:v0.1.0", f"{repository}@{digest}")
    with store.write() as s:  # as an older server stored it: no relocation map
        for reference in references:
            row = db.get_bundle_ref(s, reference)
            doc = Bundle.FromString(row.doc)
            doc.ClearField("relocation_map")
            db.replace_bundle_ref(s, row, digest=digest, doc=doc.SerializeToString())

    create(stub, "pinned", BundleReference(repository=repository, digest=digest))
    assert run(stub, "pinned", "install").state == RUN_STATE_SUCCEEDED

    image = json.loads(raw)["invocationImages"][0]
    mapping = {image["image"]: f"{repository}@{image['contentDigest']}"}
    assert json.loads(fake.specs[-1].files["/cnab/app/relocation-mapping.json"]) == mapping
    for reference in references:
        got = stub.GetBundle(pb.GetBundleRequest(reference=reference)).bundle
        assert dict(got.relocation_map) == mapping
    registry_proxy.reset()  # stored now: the next run needs no network
    assert run(stub, "pinned", "upgrade").state == RUN_STATE_SUCCEEDED
    assert registry_proxy.requests() == []
