"""Credential sets and parameter sets: one implementation, two kinds.

Both are Porter's ``{name, source}`` lists. They differ in three ways, captured by
:class:`SetKind`: the message type, the name of the entries field, and whether
literal values are write-only (credentials) or returned (parameters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ParameterSet
from porter_bundle import store
from porter_bundle.errors import AlreadyExists, FailedPrecondition, NotFound, Violations
from porter_bundle.ids import new_id
from porter_bundle.service.common import (
    Clock,
    check_etag,
    created_concurrently,
    display_address,
    mask_fields,
    new_etag,
    timestamp,
    utcnow,
)
from porter_bundle.service.filters import check_list_filters, list_filter
from porter_bundle.service.paging import PageResult, fingerprint, finish_page, parse_page_request
from porter_bundle.store import (
    KIND_CREDENTIAL_SET,
    KIND_PARAMETER_SET,
    Database,
    DuplicateKey,
    ValueSetRow,
)
from porter_bundle.validation import (
    MAX_SET_ENTRIES,
    MAX_VALUE_BYTES,
    check_address,
    check_env_name,
    check_labels,
    check_name,
    check_namespace,
)

SetMessage = TypeVar("SetMessage", CredentialSet, ParameterSet)
_SCHEMA_VERSION = re.compile(r"\d+\.\d+\.\d+")
_MAX_SOURCE_TEXT = 4096


@dataclass(frozen=True)
class SetKind(Generic[SetMessage]):
    """What distinguishes credential sets from parameter sets."""

    kind: str
    message: type[SetMessage]
    entries_field: str
    title: str
    default_schema_version: str
    literal_write_only: bool

    @property
    def updatable(self) -> tuple[str, ...]:
        """Fields an update mask may name."""
        return ("labels", self.entries_field, "schema_version")


CREDENTIAL_SETS: SetKind[CredentialSet] = SetKind(
    KIND_CREDENTIAL_SET,
    CredentialSet,
    "credentials",
    "credential set",
    "1.0.1",
    literal_write_only=True,
)
PARAMETER_SETS: SetKind[ParameterSet] = SetKind(
    KIND_PARAMETER_SET,
    ParameterSet,
    "parameters",
    "parameter set",
    "1.1.0",
    literal_write_only=False,
)


class ValueSetService(Generic[SetMessage]):
    """Creates, changes, deletes and reads the sets of one kind."""

    def __init__(self, db: Database, kind: SetKind[SetMessage], *, clock: Clock = utcnow) -> None:
        self._store = db
        self._kind: SetKind[SetMessage] = kind
        self._clock = clock

    @property
    def kind(self) -> SetKind[SetMessage]:
        """Which sets these are (credential or parameter sets)."""
        return self._kind

    def list(
        self,
        *,
        namespace: str,
        all_namespaces: bool,
        name: str,
        labels: Mapping[str, str],
        page_size: int,
        page_token: str,
        skip: int,
        visible: frozenset[str] | None = None,
    ) -> PageResult:
        """A page of serialized set messages (literal credentials withheld); over every
        namespace, only those in ``visible`` (None: all)."""
        v = Violations()
        check_list_filters(v, namespace, all_namespaces, name, labels)
        v.raise_if_any()
        flt = list_filter(namespace, all_namespaces, name, labels, visible)
        req = parse_page_request(
            page_size,
            page_token,
            skip,
            filters_fingerprint=fingerprint(
                self._kind.kind, flt.namespace, name, dict(labels), flt.visible
            ),
            key_length=2,
        )
        with self._store.read() as conn:
            page = store.list_value_sets(conn, self._kind.kind, flt, req.spec)
            return finish_page(
                req,
                page,
                lambda: store.count_value_sets(conn, self._kind.kind, flt),
                carry_total=not flt.counts_suffice,
            )

    def get(self, namespace: str, name: str) -> SetMessage:
        """One set as clients see it; NOT_FOUND when missing."""
        check_address(namespace, name)
        with self._store.read() as conn:
            doc = store.get_value_set_doc(conn, self._kind.kind, namespace, name)
        if doc is None:
            raise self._not_found(namespace, name)
        return self._kind.message.FromString(doc)

    def get_full(self, namespace: str, name: str) -> SetMessage | None:
        """One set with its literal values (for resolving a run's inputs), or None."""
        with self._store.read() as conn:
            values = store.get_value_set_values(conn, self._kind.kind, namespace, name)
        return None if values is None else self._kind.message.FromString(values)

    def get_revealed(self, namespace: str, name: str) -> SetMessage:
        """One set with its literal values in place of ``redacted`` (a reveal: the caller was
        authorized and the reveal is audited by :mod:`porter_bundle.service.reveal`); NOT_FOUND
        when missing."""
        # The stored full message is the public one with the literal values in place (both
        # are written together from it, see create/update).
        check_address(namespace, name)
        full = self.get_full(namespace, name)
        if full is None:
            raise self._not_found(namespace, name)
        return full

    def create(self, given: SetMessage) -> SetMessage:
        """Stores a new set; ALREADY_EXISTS when the address is taken."""
        full = self._kind.message()
        self._copy(given, full, self._kind.updatable)
        full.namespace, full.name = given.namespace, given.name
        self._validate(full)
        now = self._clock()
        full.id = new_id()
        full.create_time.CopyFrom(timestamp(now))
        full.update_time.CopyFrom(timestamp(now))
        full.etag = new_etag()
        public = self._public(full)
        row = ValueSetRow(
            id=full.id,
            kind=self._kind.kind,
            namespace=full.namespace,
            name=full.name,
            etag=full.etag,
            doc=public.SerializeToString(),
            values=full.SerializeToString(),
            created_at=now,
            updated_at=now,
        )
        try:
            with self._store.write() as s:
                store.add_value_set(s, row, full.labels)
        except DuplicateKey:
            raise AlreadyExists(
                f"{self._kind.title} {display_address(full.namespace, full.name)} already exists",
                reason=f"{self._reason}_EXISTS",
                metadata={"namespace": full.namespace, "name": full.name},
            ) from None
        return public

    def update(self, given: SetMessage, paths: Sequence[str]) -> SetMessage:
        """Changes the fields in ``paths`` (all when empty); ABORTED on a stale etag."""
        field_prefix = f"{self._field}."
        check_address(given.namespace, given.name, prefix=field_prefix)
        fields = mask_fields(paths, self._kind.updatable)
        with self._store.write() as s:
            row = store.get_value_set(s, self._kind.kind, given.namespace, given.name)
            if row is None:
                raise self._not_found(given.namespace, given.name)
            check_etag(
                given.etag,
                row.etag,
                f"{self._kind.title} {display_address(row.namespace, row.name)}",
            )
            full = self._kind.message.FromString(store.value_set_values(s, row))
            self._copy(given, full, fields)
            self._validate(full)
            now = self._clock()
            full.update_time.CopyFrom(timestamp(now))
            full.etag = new_etag()
            public = self._public(full)
            row.etag, row.updated_at = full.etag, now
            store.update_value_set(
                s, row, doc=public.SerializeToString(), values=full.SerializeToString()
            )
            store.set_value_set_labels(s, row.id, full.labels)
        return public

    def apply(
        self, given: SetMessage, *, dry_run: bool = False
    ) -> tuple[SetMessage, str, Sequence[str]]:
        """Makes the set what ``given`` says (a document's desired state): creates it, or updates
        every writable field. Returns the set as clients see it, "created", "updated" or
        "unchanged", and the fields that changed. Nothing is written when nothing changes, nor
        with ``dry_run`` (the set is then what would be stored). Entries sent back ``redacted``
        keep the stored literal value, as in :meth:`update`."""
        check_address(given.namespace, given.name, prefix=f"{self._field}.")
        current = self.get_full(given.namespace, given.name)
        candidate = self._kind.message()
        if current is not None:
            candidate.CopyFrom(current)
        self._copy(given, candidate, self._kind.updatable)
        candidate.namespace, candidate.name = given.namespace, given.name
        self._validate(candidate)
        if current is None:
            if dry_run:
                return self._public(candidate), "created", list(self._kind.updatable)
            try:
                return self.create(given), "created", list(self._kind.updatable)
            except AlreadyExists:
                raise created_concurrently(self._kind.title, given.namespace, given.name) from None
        changed = [
            f
            for f in self._kind.updatable
            if _field_value(current, f) != _field_value(candidate, f)
        ]
        if not changed:
            return self._public(current), "unchanged", []
        if dry_run:
            return self._public(candidate), "updated", changed
        conditional = self._kind.message()
        conditional.CopyFrom(given)
        conditional.etag = current.etag  # a concurrent change since the read fails ABORTED
        return self.update(conditional, []), "updated", changed

    def delete(self, namespace: str, name: str, *, force: bool, etag: str) -> None:
        """Deletes a set; refused while an installation uses it unless forced."""
        check_address(namespace, name)
        with self._store.write() as s:
            row = store.get_value_set(s, self._kind.kind, namespace, name)
            if row is None:
                raise self._not_found(namespace, name)
            check_etag(etag, row.etag, f"{self._kind.title} {display_address(namespace, name)}")
            if not force:
                users = store.installations_using_set(s, self._kind.kind, namespace, name)
                if users:
                    names = ", ".join(display_address(ns, n) for ns, n in users)
                    raise FailedPrecondition(
                        f"{self._kind.title} {display_address(namespace, name)} is used by installation(s) "
                        f"{names}; remove it from them first or delete with force",
                        reason=f"{self._reason}_IN_USE",
                        metadata={"namespace": namespace, "name": name, "installations": names},
                    )
            store.delete_value_set(s, row)

    # --- internals -------------------------------------------------------------

    @property
    def _reason(self) -> str:
        return str(self._kind.title.upper().replace(" ", "_"))

    @property
    def _field(self) -> str:
        return str(self._kind.title.replace(" ", "_"))

    def _not_found(self, namespace: str, name: str) -> NotFound:
        return NotFound(
            f"{self._kind.title} {display_address(namespace, name)} not found",
            reason=f"{self._reason}_NOT_FOUND",
            metadata={"namespace": namespace, "name": name},
        )

    def _copy(self, src: SetMessage, dst: SetMessage, fields: Sequence[str]) -> None:
        for f in fields:
            if f == "labels":
                dst.labels.clear()
                dst.labels.update(src.labels)
            elif f == self._kind.entries_field:
                target = getattr(dst, f)
                # A write-only literal comes back from reads as `redacted` with no source; sending
                # that back means "keep the stored value", so read-modify-write works.
                kept = {e.name: e.source for e in target if e.source.WhichOneof("kind") == "value"}
                del target[:]
                target.extend(getattr(src, f))
                for entry in target:
                    redacted = entry.source.redacted and entry.source.WhichOneof("kind") is None
                    if redacted and entry.name in kept:
                        entry.source.CopyFrom(kept[entry.name])
                    entry.source.redacted = False  # output only: never store what a client sent
            else:
                setattr(dst, f, getattr(src, f))
        if not dst.schema_version:
            dst.schema_version = self._kind.default_schema_version

    def _entries(self, msg: SetMessage) -> Sequence[NamedValueSource]:
        return cast(Sequence[NamedValueSource], getattr(msg, self._kind.entries_field))

    def _validate(self, msg: SetMessage) -> None:
        v = Violations()
        p = f"{self._field}."
        check_namespace(v, f"{p}namespace", msg.namespace)
        check_name(v, f"{p}name", msg.name)
        if not _SCHEMA_VERSION.fullmatch(msg.schema_version):
            v.add(f"{p}schema_version", "must be a version such as 1.0.1")
        check_labels(v, f"{p}labels", msg.labels)
        entries = self._entries(msg)
        if len(entries) > MAX_SET_ENTRIES:
            v.add(
                f"{p}{self._kind.entries_field}", f"at most {MAX_SET_ENTRIES} entries are allowed"
            )
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            path = f"{p}{self._kind.entries_field}[{i}]"
            check_name(v, f"{path}.name", entry.name)
            if entry.name in seen:
                v.add(f"{path}.name", f"{entry.name!r} is listed twice")
            seen.add(entry.name)
            self._validate_source(v, f"{path}.source", entry)
        v.raise_if_any()

    def _validate_source(self, v: Violations, path: str, entry: NamedValueSource) -> None:
        src = entry.source
        which = src.WhichOneof("kind")
        if which is None:
            v.add(path, "exactly one of value, env, path, command or secret is required")
            return
        if which == "value":
            kind = src.value.WhichOneof("kind")
            if kind is None:
                v.add(f"{path}.value", "value must be set")
            elif self._kind.literal_write_only and kind != "string_value":
                v.add(f"{path}.value", "a credential value must be a string")
            elif src.value.ByteSize() > MAX_VALUE_BYTES:
                v.add(f"{path}.value", f"value is larger than {MAX_VALUE_BYTES} bytes")
            return
        text: str = getattr(src, which)
        if not text:
            v.add(f"{path}.{which}", f"{which} must not be empty")
        elif len(text) > _MAX_SOURCE_TEXT:
            v.add(f"{path}.{which}", f"{which} is longer than {_MAX_SOURCE_TEXT} characters")
        elif which == "env":
            check_env_name(v, f"{path}.env", text)

    def _public(self, full: SetMessage) -> SetMessage:
        """The set as clients see it: literal credential values replaced by ``redacted``."""
        public = self._kind.message()
        public.CopyFrom(full)
        if self._kind.literal_write_only:
            for entry in self._entries(public):
                if entry.source.WhichOneof("kind") == "value":
                    entry.source.ClearField("value")
                    entry.source.redacted = True
        return public


def _field_value(msg: CredentialSet | ParameterSet, field: str) -> object:
    value = getattr(msg, field)
    if field == "labels":
        return dict(value)
    if isinstance(value, str):
        return value
    return list(value)


__all__ = ["CREDENTIAL_SETS", "PARAMETER_SETS", "SetKind", "ValueSetService"]
