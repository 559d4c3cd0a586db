"""Queries of bundles: bundle.json documents stored once per digest, and the references
(``repo:tag``, ``repo@digest``) that name them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, delete, func, or_, select
from sqlmodel import Session

from porter_bundle.store.errors import flush_new
from porter_bundle.store.listing import (
    KIND_BUNDLE,
    ListFilter,
    Page,
    PageSpec,
    bump_count,
    count,
    dialect_insert,
    like_contains,
    like_escaped,
    page,
    page_params,
    paged,
)
from porter_bundle.store.models import BundleDocumentRow, BundleRefRow, table_of
from porter_bundle.store.queries import Reader

_bundle_refs = table_of(BundleRefRow)
_bundle_docs = table_of(BundleDocumentRow)


def put_bundle_document(session: Session, digest: str, content: str) -> None:
    """Stores a bundle.json under its digest unless it is stored already. Content is addressed
    by its digest, so a concurrent writer of the same digest stored the same bytes: the insert
    skips a conflicting row instead of failing (race-free on PostgreSQL as on SQLite)."""
    insert = dialect_insert(session)
    stmt = insert(_bundle_docs).values(digest=digest, content=content)
    session.execute(stmt.on_conflict_do_nothing(index_elements=[_bundle_docs.c.digest]))


def get_bundle_document(reader: Reader, digest: str) -> str | None:
    """A stored bundle.json by digest, or None."""

    def build() -> Select[Any]:
        return select(_bundle_docs.c.content).where(_bundle_docs.c.digest == bindparam("digest"))

    found = reader.scalar("bundle.document", build, {"digest": digest})
    return None if found is None else str(found)


def find_bundle_ref(reader: Reader, repository: str, *, digest: str) -> tuple[str, str] | None:
    """(reference, digest) of any reference of ``repository`` with ``digest``, or None."""
    r = _bundle_refs

    def by_digest() -> Select[Any]:
        return (
            select(r.c.reference, r.c.digest)
            .where(
                r.c.digest == bindparam("digest"),
                or_(
                    r.c.reference.like(bindparam("tagged"), escape="/"),
                    r.c.reference.like(bindparam("pinned"), escape="/"),
                ),
            )
            .order_by(r.c.reference)
            .limit(1)
        )

    prefix = like_escaped(repository)
    params = {"digest": digest, "tagged": prefix + ":%", "pinned": prefix + "@%"}
    row = reader.first("bundle.ref.digest", by_digest, params)
    return None if row is None else (row[0], row[1])


def get_bundle_ref(session: Session, reference: str) -> BundleRefRow | None:
    """A bundle reference, or None."""
    return session.get(BundleRefRow, reference)


def get_bundle(reader: Reader, reference: str) -> tuple[bytes, str] | None:
    """(Bundle message without its JSON, bundle.json text) of a reference, or None."""

    def build() -> Select[Any]:
        return (
            select(_bundle_refs.c.doc, _bundle_docs.c.content)
            .join(_bundle_docs, _bundle_docs.c.digest == _bundle_refs.c.digest)
            .where(_bundle_refs.c.reference == bindparam("ref"))
        )

    row = reader.first("bundle", build, {"ref": reference})
    return None if row is None else (bytes(row[0]), str(row[1]))


def add_bundle_ref(session: Session, row: BundleRefRow) -> None:
    """Inserts a reference; :class:`DuplicateKey` when it exists."""
    flush_new(session, row)
    bump_count(session, KIND_BUNDLE, "", +1)


def replace_bundle_ref(session: Session, row: BundleRefRow, *, digest: str, doc: bytes) -> None:
    """Points an existing reference at another document (a moved tag)."""
    row.digest = digest
    row.doc = doc
    session.add(row)
    session.flush()


def repoint_bundle_ref(session: Session, row: BundleRefRow, *, digest: str, doc: bytes) -> None:
    """Points a reference at another document (UpdateBundle), and deletes the document it named
    when no other reference names it."""
    old = row.digest
    replace_bundle_ref(session, row, digest=digest, doc=doc)
    if old != digest:
        _delete_unused_document(session, old)


def delete_bundle_ref(session: Session, row: BundleRefRow) -> None:
    """Deletes a reference, and its document when no other reference names it."""
    digest = row.digest
    session.execute(delete(_bundle_refs).where(_bundle_refs.c.reference == row.reference))
    bump_count(session, KIND_BUNDLE, "", -1)
    _delete_unused_document(session, digest)


def _delete_unused_document(session: Session, digest: str) -> None:
    still_used = session.execute(
        select(_bundle_refs.c.reference).where(_bundle_refs.c.digest == digest).limit(1)
    ).first()
    if still_used is None:
        session.execute(delete(_bundle_docs).where(_bundle_docs.c.digest == digest))


def list_bundles(reader: Reader, name_contains: str, spec: PageSpec) -> Page:
    """A page of Bundle messages sorted by reference."""
    r = _bundle_refs

    def build() -> Select[Any]:
        stmt = select(r.c.doc, r.c.reference)
        if name_contains:
            stmt = stmt.where(r.c.reference.like(bindparam("pat"), escape="/"))
        if spec.after is not None:
            stmt = stmt.where(r.c.reference > bindparam("after"))
        return paged(stmt.order_by(r.c.reference), spec)

    key = ("bundles", bool(name_contains), spec.after is not None, bool(spec.skip))
    params = {
        "pat": like_contains(name_contains),
        "after": spec.after[0] if spec.after else None,
        **page_params(spec),
    }
    return page(reader.rows(key, build, params), spec, 1)


def count_bundles(reader: Reader, name_contains: str) -> int:
    """How many bundle references match."""
    if not name_contains:
        return count(reader, "bundles", KIND_BUNDLE, _bundle_refs, list, ListFilter(""), {})

    def build() -> Select[Any]:
        return (
            select(func.count())
            .select_from(_bundle_refs)
            .where(_bundle_refs.c.reference.like(bindparam("pat"), escape="/"))
        )

    return int(reader.scalar("bundles.count", build, {"pat": like_contains(name_contains)}))
