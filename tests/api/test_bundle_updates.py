"""UpdateBundle through real stubs: re-validated, etag-guarded, refused while a run uses it."""

from __future__ import annotations

import hashlib
import json

import grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, RUN_STATE_SUCCEEDED
from porter_bundle.service.runs import NewRun
from tests.helpers import failure

REF = "localhost:5000/updatable:v1"


def doc(version: str, **extra) -> str:
    return json.dumps(
        {
            "schemaVersion": "v1.0.0",
            "name": "updatable",
            "version": version,
            "invocationImages": [{"imageType": "docker", "image": "localhost/updatable:v1"}],
            **extra,
        }
    )


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_update_replaces_the_document_under_its_etag(server, stub):
    first = stub.CreateBundle(
        pb.CreateBundleRequest(reference=REF, bundle_json=doc("1.0.0"))
    ).bundle
    assert (
        first.etag and stub.GetBundle(pb.GetBundleRequest(reference=REF)).bundle.etag == first.etag
    )

    new = doc("1.0.1", description="second")
    updated = stub.UpdateBundle(
        pb.UpdateBundleRequest(reference=REF, bundle_json=new, etag=first.etag)
    ).bundle
    assert (updated.version, updated.description, updated.digest) == (
        "1.0.1",
        "second",
        digest_of(new),
    )
    assert updated.etag != first.etag and updated.bundle_json == new
    got = stub.GetBundle(pb.GetBundleRequest(reference=REF)).bundle
    assert (got.bundle_json, got.etag, got.create_time) == (new, updated.etag, first.create_time)
    listed = stub.ListBundles(pb.ListBundlesRequest()).bundles
    assert [(b.reference, b.version, b.etag) for b in listed] == [(REF, "1.0.1", updated.etag)]
    # The document nothing names any more is gone.
    assert server.services.bundles.document(first.digest) is None

    stale = failure(
        stub.UpdateBundle,
        pb.UpdateBundleRequest(reference=REF, bundle_json=doc("1.0.2"), etag=first.etag),
    )
    assert (stale.code, stale.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert stub.GetBundle(pb.GetBundleRequest(reference=REF)).bundle.version == "1.0.1"
    # Without an etag the update is unconditional.
    blind = stub.UpdateBundle(pb.UpdateBundleRequest(reference=REF, bundle_json=doc("1.0.3")))
    assert blind.bundle.version == "1.0.3"


def test_update_is_validated_like_create(server, stub):
    stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=doc("1.0.0")))
    bad = json.loads(doc("1.0.0"))
    del bad["invocationImages"]
    err = failure(
        stub.UpdateBundle, pb.UpdateBundleRequest(reference=REF, bundle_json=json.dumps(bad))
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.violations
    err = failure(stub.UpdateBundle, pb.UpdateBundleRequest(reference=REF, bundle_json="{"))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    err = failure(
        stub.UpdateBundle,
        pb.UpdateBundleRequest(reference="localhost:5000/nothing:v1", bundle_json=doc("1")),
    )
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "BUNDLE_NOT_FOUND")
    pinned_doc = doc("2.0.0")
    pinned = f"localhost:5000/updatable@{digest_of(pinned_doc)}"
    stub.CreateBundle(pb.CreateBundleRequest(reference=pinned, bundle_json=pinned_doc))
    err = failure(stub.UpdateBundle, pb.UpdateBundleRequest(reference=pinned, bundle_json=doc("3")))
    assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DIGEST_MISMATCH")
    assert stub.GetBundle(pb.GetBundleRequest(reference=REF)).bundle.version == "1.0.0"


def test_update_is_refused_while_a_run_uses_the_bundle(server, stub):
    created = stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=doc("1.0.0")))
    inst = Installation(
        namespace="dev", name="app", bundle=BundleReference(repository=REF[:-3], tag="v1")
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    runs = server.services.runs
    run, _ = runs.create(
        "dev",
        "app",
        NewRun(action=ACTION_INSTALL, bundle_reference=REF, bundle_digest=created.bundle.digest),
    )
    err = failure(stub.UpdateBundle, pb.UpdateBundleRequest(reference=REF, bundle_json=doc("2")))
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BUNDLE_IN_USE")
    assert err.metadata["run_id"] == run.id

    runs.start(run.id)
    runs.finish(run.id, RUN_STATE_SUCCEEDED)
    updated = stub.UpdateBundle(pb.UpdateBundleRequest(reference=REF, bundle_json=doc("2")))
    assert updated.bundle.version == "2"
    # The finished run's claim keeps the bundle it ran with.
    claim = json.loads(stub.GetClaim(pb.GetClaimRequest(claim_id=run.id)).claim.claim_json)
    assert claim["bundle"]["version"] == "1.0.0"
