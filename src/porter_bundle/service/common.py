"""Helpers every service shares: the clock, etags, timestamps and struct checks."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from porter_bundle.errors import Aborted, Violations, quote
from porter_bundle.validation import MAX_VALUE_BYTES

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def display_address(namespace: str, name: str) -> str:
    """How messages name a resource: ``ns/name``, or ``name (global namespace)``."""
    return f"{namespace}/{name}" if namespace else f"{name} (global namespace)"


def new_etag() -> str:
    """A fresh opaque etag."""
    return secrets.token_hex(8)


def timestamp(dt: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def check_struct(v: Violations, field: str, value: Struct, *, limit: int = MAX_VALUE_BYTES) -> None:
    """A Struct of named values: keys non-empty and bounded, total size bounded."""
    for key in value.fields:
        if not key or len(key) > 253:
            v.add(f"{field}[{key!r}]", "key must be 1-253 characters")
    if value.ByteSize() > limit:
        v.add(field, f"is larger than {limit} bytes")


def check_etag(given: str, stored: str, what: str) -> None:
    """ABORTED when a non-empty etag does not match the stored one."""
    if given and given != stored:
        raise Aborted(
            f"{what} was changed since it was read (etag {quote(given)!r} is stale); read it again and retry",
            reason="ETAG_MISMATCH",
            metadata={"etag": stored},
        )


def mask_fields(paths: Sequence[str], allowed: Sequence[str]) -> Sequence[str]:
    """The fields an update mask names (every allowed one when empty); INVALID_ARGUMENT for others."""
    if not paths:
        return allowed
    v = Violations()
    for i, path in enumerate(paths):
        if path not in allowed:
            v.add(
                f"update_mask.paths[{i}]",
                f"{path!r} cannot be updated; allowed: {', '.join(allowed)}",
            )
    v.raise_if_any()
    return list(dict.fromkeys(paths))


def created_concurrently(what: str, namespace: str, name: str) -> Aborted:
    """ABORTED for an apply that found nothing, then lost the create to another caller."""
    return Aborted(
        f"{what} {display_address(namespace, name)} was created concurrently; apply again",
        reason="CONCURRENT_CHANGE",
        metadata={"namespace": namespace, "name": name},
    )
