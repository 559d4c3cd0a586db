"""UpdateBundle: replacing the bundle.json registered under a reference.

The new document is validated like CreateBundle's. Runs started afterwards use it; runs
already recorded keep the document they were planned with (their claim holds it), but while
one is still active the update is refused, so a run never sees its bundle change under it.
Only registered bundles are updated: a pulled one follows its registry.
"""

from __future__ import annotations

from porter.bundle.v1.bundle_pb2 import BUNDLE_SOURCE_PULLED, Bundle
from porter.bundle.v1.run_pb2 import Run
from porter_bundle import store
from porter_bundle.errors import FailedPrecondition
from porter_bundle.service.bundles import (
    bundle_etag,
    bundle_not_found,
    checked_bundle_json,
)
from porter_bundle.service.common import Clock, check_etag, utcnow
from porter_bundle.store import Database


class BundleUpdater:
    """Replaces registered bundle.json documents."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._store = db
        self._clock = clock

    def update(self, reference: str, bundle_json: str, *, etag: str = "") -> Bundle:
        """Replaces the document under ``reference``; returns the bundle with its new etag."""
        ref, parsed = checked_bundle_json(reference, bundle_json)
        name = str(ref)
        with self._store.write() as s:
            row = store.get_bundle_ref(s, name)
            if row is None:
                raise bundle_not_found(name)
            bundle = Bundle.FromString(row.doc)
            check_etag(etag, bundle.etag or bundle_etag(bundle), f"bundle {name}")
            if bundle.source == BUNDLE_SOURCE_PULLED:
                raise FailedPrecondition(
                    f"bundle {name} was pulled from its registry: push the new version there "
                    "and pull it (PullBundle)",
                    reason="BUNDLE_PULLED",
                    metadata={"reference": name},
                )
            users = [
                run.id
                for run in (Run.FromString(r.doc) for r in store.active_run_rows(s))
                if run.bundle_reference == name
            ]
            if users:
                raise FailedPrecondition(
                    f"bundle {name} is used by the active run {users[0]}; wait for it to end "
                    "or cancel it",
                    reason="BUNDLE_IN_USE",
                    metadata={"reference": name, "run_id": users[0]},
                )
            bundle.digest = bundle.bundle_json_digest = parsed.digest
            bundle.name, bundle.version = parsed.name, parsed.version
            bundle.description = parsed.description
            bundle.etag = bundle_etag(bundle)
            store.put_bundle_document(s, parsed.digest, bundle_json)
            store.repoint_bundle_ref(s, row, digest=parsed.digest, doc=bundle.SerializeToString())
        bundle.bundle_json = bundle_json
        return bundle


__all__ = ["BundleUpdater"]
