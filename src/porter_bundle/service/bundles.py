"""Bundles registered under references (``repo:tag`` or ``repo@digest``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from porter.bundle.v1.bundle_pb2 import (
    BUNDLE_SOURCE_PULLED,
    BUNDLE_SOURCE_REGISTERED,
    Bundle,
    BundleSource,
)
from porter_bundle import store
from porter_bundle.bundles.cnab import BundleDocument, parse_bundle
from porter_bundle.bundles.registry import (
    PulledBundle,
    RegistryClient,
    RegistryError,
    error_kind,
    registry_error,
)
from porter_bundle.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PorterBundleError,
    Unavailable,
    Violations,
)
from porter_bundle.service.common import Clock, timestamp, utcnow
from porter_bundle.service.observe import Observers
from porter_bundle.service.paging import PageResult, fingerprint, finish_page, parse_page_request
from porter_bundle.store import BundleRefRow, Database, DuplicateKey
from porter_bundle.validation import (
    MAX_BUNDLE_JSON_BYTES,
    BundleRef,
    ParsedReference,
    parse_reference,
)

if TYPE_CHECKING:
    from sqlmodel import Session


@dataclass(frozen=True)
class ResolvedBundle:
    """An installation's bundle reference resolved to a stored bundle.json."""

    reference: str
    digest: str
    content: str
    relocation_map: Mapping[str, str] = field(default_factory=dict)
    """A pulled bundle's images in the repository it came from (see Bundle.relocation_map)."""

    @property
    def document(self) -> dict[str, Any]:
        """The parsed bundle.json."""
        doc: dict[str, Any] = json.loads(self.content)
        return doc


class BundleService:
    """Registers, removes and reads bundles."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utcnow,
        registry: RegistryClient | None = None,
        observers: Observers | None = None,
    ) -> None:
        self._store = db
        self._clock = clock
        self._registry = registry
        self._observers = observers or Observers()

    def _registry_failed(self, exc: RegistryError, reference: str) -> PorterBundleError:
        """Tells the error observers and gives the domain error of a registry failure."""
        self._observers.error("registry", error_kind(exc))
        return registry_error(exc, reference)

    def create(self, reference: str, bundle_json: str) -> Bundle:
        """Validates a bundle.json and registers it under ``reference``."""
        ref, parsed = checked_bundle_json(reference, bundle_json)
        now = self._clock()
        bundle = bundle_message(
            str(ref),
            "" if ref.digest else ref.tag,
            parsed.digest,
            parsed,
            BUNDLE_SOURCE_REGISTERED,
            parsed.digest,
            now,
        )
        try:
            with self._store.write() as s:
                store.put_bundle_document(s, parsed.digest, bundle_json)
                _add_ref(s, bundle, now)
        except DuplicateKey:
            raise AlreadyExists(
                f"bundle reference {bundle.reference} already exists; delete it first to move it",
                reason="BUNDLE_EXISTS",
                metadata={"reference": bundle.reference},
            ) from None
        bundle.bundle_json = bundle_json
        return bundle

    def resolve(self, ref: BundleRef) -> ResolvedBundle:
        """The bundle an installation's reference names (digest > version > tag).

        A bundle registered here wins; then one stored under the digest (no network); then,
        when a registry client is configured, the registry (a tag is re-resolved by a HEAD
        each time, so a moved tag is noticed, and pulled only when its digest is new)."""
        if ref.digest:
            found = self._stored(ref.repository, digest=ref.digest)
            if found is not None:
                return self._with_relocations(ref.repository, found)
            if self._registry is None:
                raise _unknown(str(ref), None)
            return self._pull(ref.repository, ref.digest, str(ref))
        reference = str(ref)
        with self._store.read() as conn:
            row = store.get_bundle(conn, reference)
        stored = None
        if row is not None:
            stored = Bundle.FromString(row[0])
            if self._registry is None or stored.source != BUNDLE_SOURCE_PULLED:
                return _resolved(reference, stored, row[1])
        if self._registry is None:
            raise _unknown(reference, None)
        tag = ref.effective_tag
        try:
            digest = self._registry.resolve(ref.repository, tag)
        except RegistryError as exc:
            raise self._registry_failed(exc, reference) from None
        with self._store.read() as conn:
            pinned = store.get_bundle(conn, f"{ref.repository}@{digest}")
        if pinned is None:
            return self._pull(ref.repository, tag, reference)
        if stored is None or stored.digest != digest:  # the tag is new here, or moved
            self._store_pulled(ref.repository, tag, digest, pinned[1].encode(), None)
        found = _resolved(reference, Bundle.FromString(pinned[0]), pinned[1])
        return self._with_relocations(ref.repository, found)

    def _with_relocations(self, repository: str, found: ResolvedBundle) -> ResolvedBundle:
        """A bundle pulled before relocation maps were recorded has none: its index is read
        again once and the map stored with its references. Without the registry it runs as
        before (its contentDigest pins the image)."""
        if found.relocation_map or self._registry is None:
            return found
        pinned = f"{repository}@{found.digest}"
        with self._store.read() as conn:
            row = store.get_bundle(conn, pinned)
        stored = None if row is None else Bundle.FromString(row[0])
        if stored is None or stored.source != BUNDLE_SOURCE_PULLED or stored.relocation_map:
            return found
        try:
            mapping = self._registry.relocation_map(repository, found.digest, found.document)
        except RegistryError as exc:
            self._observers.error("registry", error_kind(exc))
            return found
        with self._store.write() as s:
            for reference in dict.fromkeys([pinned, found.reference]):
                ref_row = store.get_bundle_ref(s, reference)
                if ref_row is None or ref_row.digest != found.digest:
                    continue
                doc = Bundle.FromString(ref_row.doc)
                if doc.source == BUNDLE_SOURCE_PULLED and not doc.relocation_map:
                    doc.relocation_map.update(mapping)
                    store.replace_bundle_ref(
                        s, ref_row, digest=found.digest, doc=doc.SerializeToString()
                    )
        return ResolvedBundle(found.reference, found.digest, found.content, mapping)

    def cached(self, ref: BundleRef) -> ResolvedBundle | None:
        """The bundle ``ref`` names when this server has it (registered, or pulled before),
        else None; never reaches a registry (a pulled tag is taken as last resolved)."""
        if ref.digest:
            return self._stored(ref.repository, digest=ref.digest)
        reference = str(ref)
        with self._store.read() as conn:
            row = store.get_bundle(conn, reference)
        if row is None:
            return None
        return _resolved(reference, Bundle.FromString(row[0]), row[1])

    def pull(self, reference: str) -> Bundle:
        """PullBundle: resolves ``repo:tag`` or ``repo@digest`` in its registry and stores it."""
        ref = parse_reference(reference)
        if self._registry is None:
            raise Unavailable(
                "this server pulls no bundles from registries (no registry client configured)",
                reason="REGISTRY_DISABLED",
            )
        resolved = self.resolve(BundleRef(ref.repository, digest=ref.digest, tag=ref.tag))
        return self.get(resolved.reference)

    def _stored(self, repository: str, *, digest: str) -> ResolvedBundle | None:
        with self._store.read() as conn:
            found = store.find_bundle_ref(conn, repository, digest=digest)
            row = None if found is None else store.get_bundle(conn, found[0])
        if found is None or row is None:
            return None
        return _resolved(found[0], Bundle.FromString(row[0]), row[1])

    def _pull(self, repository: str, reference: str, display: str) -> ResolvedBundle:
        assert self._registry is not None
        try:
            pulled = self._registry.pull(repository, reference)
        except RegistryError as exc:
            raise self._registry_failed(exc, display) from None
        try:
            text = pulled.bundle_json.decode()
        except UnicodeDecodeError:
            raise InvalidArgument.from_violations(
                [FieldViolation("bundle_json", "bundle.json is not UTF-8")],
                reason="INVALID_BUNDLE",
            ) from None
        parsed = parse_bundle(pulled.bundle_json)
        tag = "" if reference.startswith(("sha256:", "sha512:")) else reference
        self._store_pulled(repository, tag, pulled.digest, pulled.bundle_json, (pulled, parsed))
        name = f"{repository}:{tag}" if tag else f"{repository}@{pulled.digest}"
        return ResolvedBundle(name, pulled.digest, text, dict(pulled.relocation_map))

    def _store_pulled(
        self,
        repository: str,
        tag: str,
        digest: str,
        bundle_json: bytes,
        pulled: tuple[PulledBundle, BundleDocument] | None,
    ) -> None:
        """Stores a pulled bundle under ``repo@digest`` and points ``repo:tag`` at it, in one
        transaction (a tag registered with CreateBundle meanwhile is left alone). A concurrent
        pull of the same bundle that stored it first is fine: the transaction is retried once."""

        def once() -> None:
            now = self._clock()
            with self._store.write() as s:
                pinned = store.get_bundle_ref(s, f"{repository}@{digest}")
                if pinned is None and pulled is None:
                    return  # deleted meanwhile: the next resolution pulls it again
                if pinned is None:
                    assert pulled is not None
                    store.put_bundle_document(s, digest, bundle_json.decode())
                    pinned_doc = _pulled_message(repository, "", digest, pulled, now)
                    _add_ref(s, pinned_doc, now)
                else:
                    pinned_doc = Bundle.FromString(pinned.doc)
                if not tag:
                    return
                tagged = Bundle()
                tagged.CopyFrom(pinned_doc)
                tagged.reference, tagged.tag = f"{repository}:{tag}", tag
                tagged.create_time.CopyFrom(timestamp(now))
                row = store.get_bundle_ref(s, tagged.reference)
                if row is None:
                    _add_ref(s, tagged, now)
                elif (
                    row.digest != digest
                    and Bundle.FromString(row.doc).source == BUNDLE_SOURCE_PULLED
                ):
                    store.replace_bundle_ref(s, row, digest=digest, doc=tagged.SerializeToString())

        try:
            once()
        except DuplicateKey:
            once()

    def document(self, digest: str) -> dict[str, Any] | None:
        """A stored bundle.json by digest (for finishing runs after a restart)."""
        stored = self.stored(digest)
        return None if stored is None else stored.document

    def stored(self, digest: str, reference: str = "") -> ResolvedBundle | None:
        """A stored bundle.json by digest, as resolved from ``reference`` (for starting a run
        accepted before a restart with the very bundle it was accepted with)."""
        with self._store.read() as conn:
            content = store.get_bundle_document(conn, digest)
        return None if content is None else ResolvedBundle(reference, digest, content)

    def get(self, reference: str) -> Bundle:
        """A bundle with its bundle.json; NOT_FOUND when the reference is unknown."""
        ref = str(parse_reference(reference))
        with self._store.read() as conn:
            found = store.get_bundle(conn, ref)
        if found is None:
            raise bundle_not_found(ref)
        bundle = Bundle.FromString(found[0])
        bundle.bundle_json = found[1]
        bundle.etag = bundle.etag or bundle_etag(bundle)  # registered before etags were stored
        return bundle

    def delete(self, reference: str) -> None:
        """Removes a reference (and its document when nothing else names it)."""
        ref = str(parse_reference(reference))
        with self._store.write() as s:
            row = store.get_bundle_ref(s, ref)
            if row is None:
                raise bundle_not_found(ref)
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


def checked_bundle_json(reference: str, bundle_json: str) -> tuple[ParsedReference, BundleDocument]:
    """The parsed reference and bundle.json of CreateBundle and UpdateBundle; INVALID_ARGUMENT
    lists what is wrong (a digest reference must name the document's digest)."""
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
    return ref, parsed


def bundle_etag(bundle: Bundle) -> str:
    """The etag of a bundle under its reference: follows its bundle.json's content."""
    content = bundle.bundle_json_digest or bundle.digest
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _add_ref(s: Session, bundle: Bundle, now: datetime) -> None:
    row = BundleRefRow(
        reference=bundle.reference,
        digest=bundle.digest,
        doc=bundle.SerializeToString(),
        created_at=now,
    )
    store.add_bundle_ref(s, row)


def _pulled_message(
    repository: str,
    tag: str,
    digest: str,
    pulled: tuple[PulledBundle, BundleDocument],
    now: datetime,
) -> Bundle:
    raw, parsed = pulled
    reference = f"{repository}:{tag}" if tag else f"{repository}@{digest}"
    bundle = bundle_message(
        reference, tag, digest, parsed, BUNDLE_SOURCE_PULLED, raw.bundle_json_digest, now
    )
    bundle.relocation_map.update(raw.relocation_map)
    return bundle


def _resolved(reference: str, stored: Bundle, content: str) -> ResolvedBundle:
    return ResolvedBundle(reference, stored.digest, content, dict(stored.relocation_map))


def bundle_message(
    reference: str,
    tag: str,
    digest: str,
    parsed: BundleDocument,
    source: BundleSource.ValueType,
    bundle_json_digest: str,
    now: datetime,
) -> Bundle:
    """The stored Bundle message (without its bundle.json)."""
    repository = reference.rpartition("@")[0] if "@" in reference else reference.rpartition(":")[0]
    bundle = Bundle(
        reference=reference,
        repository=repository,
        tag=tag,
        digest=digest,
        name=parsed.name,
        version=parsed.version,
        description=parsed.description,
        source=source,
        bundle_json_digest=bundle_json_digest,
    )
    bundle.etag = bundle_etag(bundle)
    bundle.create_time.CopyFrom(timestamp(now))
    return bundle


def _unknown(reference: str, registry: RegistryClient | None) -> NotFound:
    hint = "" if registry is not None else "; register it with CreateBundle"
    return NotFound(
        f"bundle {reference} is not known to the server{hint}",
        reason="BUNDLE_NOT_FOUND",
        metadata={"reference": reference},
    )


def bundle_not_found(reference: str) -> NotFound:
    return NotFound(
        f"bundle {reference} not found",
        reason="BUNDLE_NOT_FOUND",
        metadata={"reference": reference},
    )
