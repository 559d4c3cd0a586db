"""Domain errors: the only exceptions the service layer raises on purpose.

The tree::

    PorterBundleError
    ├── InvalidArgument        a request is malformed; carries field violations
    │   └── MalformedRequest       the request bytes are not a message of the RPC's type
    ├── NotFound               the addressed resource does not exist
    ├── AlreadyExists          a create collides with an existing resource
    ├── FailedPrecondition     the resource is not in a state that allows the call
    ├── Aborted                a concurrency conflict (stale etag, active run)
    ├── Unavailable            a dependency (container engine, registry) cannot be reached
    │   └── DatabaseUnavailable    the database cannot be reached or is busy
    ├── Unauthenticated        the caller (or a registry's credentials) could not be authenticated
    └── PermissionDenied       the caller (or a registry) is authenticated but not allowed

Each carries a stable machine-readable ``reason`` (UPPER_SNAKE_CASE) and string
metadata. Transport codes live in :mod:`porter_bundle.status`, the single place
that maps these classes to gRPC statuses. Messages must never contain secret values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SUMMARY_VIOLATIONS = 8
"""How many violations an error's message spells out (its BadRequest lists more)."""


def quote(text: str, limit: int = 256) -> str:
    """At most ``limit`` characters of ``text`` (cut short with "…"): how an error message
    quotes what a client sent, so a huge input never makes a huge error."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class FieldViolation:
    """One offending request field: its path (e.g. ``installation.bundle.digest``) and what is wrong."""

    field: str
    description: str


class PorterBundleError(Exception):
    """Base of all domain errors."""

    default_reason = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(PorterBundleError):
    """The request itself is wrong; ``violations`` names each offending field."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: Iterable[FieldViolation] = (),
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = list(violations)

    @classmethod
    def from_violations(
        cls, violations: Iterable[FieldViolation], *, reason: str | None = None
    ) -> InvalidArgument:
        """Builds one error whose message summarises the violations (the first
        :data:`SUMMARY_VIOLATIONS`, each cut short, then how many more)."""
        items = list(violations)
        summary = "; ".join(
            f"{quote(v.field, 300)}: {quote(v.description, 200)}"
            for v in items[:SUMMARY_VIOLATIONS]
        )
        if len(items) > SUMMARY_VIOLATIONS:
            summary += f"; and {len(items) - SUMMARY_VIOLATIONS} more"
        return cls(f"invalid request: {summary}", items, reason=reason)


class MalformedRequest(InvalidArgument):
    """The request bytes could not be decoded as the RPC's request message (corrupt wire
    format, a string that is not UTF-8, nesting beyond the decoder's limit)."""

    default_reason = "MALFORMED_REQUEST"


class NotFound(PorterBundleError):
    """The addressed resource does not exist."""

    default_reason = "NOT_FOUND"


class AlreadyExists(PorterBundleError):
    """A resource with the same address exists already."""

    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(PorterBundleError):
    """The resource's state does not allow the operation (e.g. deleting an installed installation)."""

    default_reason = "FAILED_PRECONDITION"


class Aborted(PorterBundleError):
    """A concurrency conflict: a stale etag or a competing operation. Retrying after a re-read may work."""

    default_reason = "ABORTED"


class Violations:
    """Collects field violations while validating, then raises them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Records one violation."""
        self.items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, *, reason: str | None = None) -> None:
        """Raises :class:`InvalidArgument` listing every recorded violation, if there is one."""
        if self.items:
            raise InvalidArgument.from_violations(self.items, reason=reason)


class Unavailable(PorterBundleError):
    """A dependency of the call (container engine, registry) cannot be reached; retrying later may work."""

    default_reason = "UNAVAILABLE"


class ResourceExhausted(PorterBundleError):
    """The answer would be larger than the caller can receive (e.g. gRPC's default 4 MiB)."""

    default_reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(PorterBundleError):
    """No valid credentials: a missing or unknown bearer token, or a registry that refused to log in."""

    default_reason = "UNAUTHENTICATED"


class PermissionDenied(PorterBundleError):
    """Valid credentials that do not allow the call (a missing role, a registry that refuses access)."""

    default_reason = "PERMISSION_DENIED"


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached or cannot take the work now (down, locked, every pooled
    connection busy); retrying later may work. ``metadata["incident"]`` names the server's log
    line that holds the cause (see :mod:`porter_bundle.store.errors`)."""

    default_reason = "DATABASE_UNAVAILABLE"
