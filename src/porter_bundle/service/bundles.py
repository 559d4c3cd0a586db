"""Bundles registered under references (``repo:tag`` or ``repo@digest``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from porter.bundle.v1.bundle_pb2 import Bundle
from porter_bundle.bundles.cnab import parse_bundle
from porter_bundle.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from porter_bundle.service.common import Clock, timestamp, utcnow
from porter_bundle.service.paging import PageResult, fingerprint, finish_page, parse_page_request
from porter_bundle.store import DuplicateKey, Store, store
from porter_bundle.store.models import BundleRefRow
from porter_bundle.validation import MAX_BUNDLE_JSON_BYTES, BundleRef, parse_reference


@dataclass(frozen=True)
class ResolvedBundle:
    """An installation's bundle reference resolved to a stored bundle.json."""

    reference: str
    digest: str
    content: str

    @property
    def document(self) -> dict[str, Any]:
        """The parsed bundle.json."""
        doc: dict[str, Any] = json.loads(self.content)
        return doc


class BundleService:
    """Registers, removes and reads bundles."""

    def __init__(self, store_: Store, *, clock: Clock = utcnow) -> None:
        self._store = store_
        self._clock = clock

    def create(self, reference: str, bundle_json: str) -> Bundle:
        """Validates a bundle.json and registers it under ``reference``."""
        ref = parse_reference(reference)
        if not bundle_json:
            raise InvalidArgument.from_violations(
                [FieldViolation("bundle_json", "bundle_json is required")]
            )
        raw = bundle_json.encode()
        if len(raw) > MAX_BUNDLE_JSON_BYTES:
            raise InvalidArgument.from_violations(
                [FieldViolation("bundle_json", f"is larger than {MAX_BUNDLE_JSON_BYTES} bytes")]
            )
        parsed = parse_bundle(raw)
        if ref.digest and ref.digest != parsed.digest:
            raise InvalidArgument.from_violations(
                [
                    FieldViolation(
                        "reference",
                        f"digest {ref.digest} does not match the document ({parsed.digest})",
                    )
                ],
                reason="DIGEST_MISMATCH",
            )
        now = self._clock()
        bundle = Bundle(
            reference=str(ref),
            repository=ref.repository,
            tag=ref.tag,
            digest=parsed.digest,
            name=parsed.name,
            version=parsed.version,
            description=parsed.description,
        )
        bundle.create_time.CopyFrom(timestamp(now))
        row = BundleRefRow(
            reference=bundle.reference,
            digest=parsed.digest,
            doc=bundle.SerializeToString(),
            created_at=now,
        )
        try:
            with self._store.write() as s:
                store.put_bundle_document(s, parsed.digest, bundle_json)
                store.add_bundle_ref(s, row)
        except DuplicateKey:
            raise AlreadyExists(
                f"bundle reference {bundle.reference} already exists; delete it first to move it",
                reason="BUNDLE_EXISTS",
                metadata={"reference": bundle.reference},
            ) from None
        bundle.bundle_json = bundle_json
        return bundle

    def resolve(self, ref: BundleRef) -> ResolvedBundle:
        """The stored bundle an installation's reference names (digest > version > tag)."""
        with self._store.read() as conn:
            if ref.digest:
                found = store.find_bundle_ref(conn, ref.repository, digest=ref.digest)
            else:
                found = store.find_bundle_ref(conn, ref.repository, reference=str(ref))
            content = None if found is None else store.get_bundle_document(conn, found[1])
        if found is None or content is None:
            raise NotFound(
                f"bundle {ref} is not known to the server; register it with CreateBundle",
                reason="BUNDLE_NOT_FOUND",
                metadata={"reference": str(ref)},
            )
        return ResolvedBundle(found[0], found[1], content)

    def document(self, digest: str) -> dict[str, Any] | None:
        """A stored bundle.json by digest (for finishing runs after a restart)."""
        with self._store.read() as conn:
            content = store.get_bundle_document(conn, digest)
        return None if content is None else ResolvedBundle("", digest, content).document

    def get(self, reference: str) -> Bundle:
        """A bundle with its bundle.json; NOT_FOUND when the reference is unknown."""
        ref = str(parse_reference(reference))
        with self._store.read() as conn:
            found = store.get_bundle(conn, ref)
        if found is None:
            raise _not_found(ref)
        bundle = Bundle.FromString(found[0])
        bundle.bundle_json = found[1]
        return bundle

    def delete(self, reference: str) -> None:
        """Removes a reference (and its document when nothing else names it)."""
        ref = str(parse_reference(reference))
        with self._store.write() as s:
            row = store.get_bundle_ref(s, ref)
            if row is None:
                raise _not_found(ref)
            store.delete_bundle_ref(s, row)

    def list(self, *, name: str, page_size: int, page_token: str, skip: int) -> PageResult:
        """A page of serialized Bundle messages (without bundle.json), sorted by reference."""
        v = Violations()
        if len(name) > 512:
            v.add("name", "name filter is longer than 512 characters")
        v.raise_if_any()
        req = parse_page_request(
            page_size,
            page_token,
            skip,
            filters_fingerprint=fingerprint("bundles", name),
            key_length=1,
        )
        with self._store.read() as conn:
            page = store.list_bundles(conn, name, req.spec)
            return finish_page(
                req, page, lambda: store.count_bundles(conn, name), carry_total=bool(name)
            )


def _not_found(reference: str) -> NotFound:
    return NotFound(
        f"bundle {reference} not found",
        reason="BUNDLE_NOT_FOUND",
        metadata={"reference": reference},
    )
