"""What a registry's answers mean: the registry error classes, the one mapping of them to
domain errors, and reading a response body or an error answer within bounds.

Every failure of :mod:`porter_bundle.bundles.registry` is one of these classes; it becomes a
domain error in :func:`registry_error` and nowhere else.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import httpx

from porter_bundle.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    PorterBundleError,
    Unauthenticated,
    Unavailable,
)

if TYPE_CHECKING:
    from porter_bundle.bundles.registry import Repository

MAX_ERROR_BYTES = 64 * 1024
MAX_WORDS = 300
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


class RegistryError(Exception):
    """A registry operation failed; ``host`` names the registry, ``status`` the HTTP status
    of its answer (None when there was no answer, or the answer itself was wrong)."""

    def __init__(self, host: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.message = message
        self.status = status


class RegistryUnreachable(RegistryError):
    """The registry cannot be reached, or answered 5xx / 429."""


class RegistryNotFound(RegistryError):
    """The repository, tag, manifest or blob does not exist."""


class RegistryUnauthorized(RegistryError):
    """The registry refused the credentials (or their absence): 401."""


class RegistryForbidden(RegistryError):
    """The registry knows who we are and refuses access: 403."""


class RegistryBadContent(RegistryError):
    """What the registry sent is wrong: a digest or size mismatch, too large, not a bundle."""


class RegistryRefused(RegistryError):
    """The registry refused a request for another reason (a 4xx, e.g. a push it rejects)."""


def registry_error(exc: RegistryError, reference: str) -> PorterBundleError:
    """The domain error of a registry failure (the only place making that choice)."""
    meta = {"reference": reference, "registry": exc.host}
    text = f"registry {exc.host}: {exc.message} ({reference})"
    if isinstance(exc, RegistryUnreachable):
        return Unavailable(text, reason="REGISTRY_UNAVAILABLE", metadata=meta)
    if isinstance(exc, RegistryNotFound):
        return NotFound(text, reason="BUNDLE_NOT_FOUND", metadata=meta)
    if isinstance(exc, RegistryUnauthorized):
        return Unauthenticated(text, reason="REGISTRY_UNAUTHENTICATED", metadata=meta)
    if isinstance(exc, RegistryForbidden):
        return PermissionDenied(text, reason="REGISTRY_PERMISSION_DENIED", metadata=meta)
    if isinstance(exc, RegistryBadContent):
        return FailedPrecondition(text, reason="REGISTRY_BAD_CONTENT", metadata=meta)
    return FailedPrecondition(text, reason="REGISTRY_REFUSED", metadata=meta)


def error_kind(exc: RegistryError) -> str:
    """The failure as a bounded kind for metrics (see ``service.observe.ERROR_KINDS``)."""
    if isinstance(exc, RegistryUnreachable):
        return "timeout" if exc.status is None and "Timeout" in exc.message else "unavailable"
    if isinstance(exc, RegistryNotFound):
        return "not_found"
    if isinstance(exc, RegistryUnauthorized | RegistryForbidden):
        return "denied"
    if isinstance(exc, RegistryBadContent):
        return "bad_content"
    if isinstance(exc, RegistryRefused):
        return "refused"
    return "other"


def describe_http_error(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


def read_body(host: str, response: httpx.Response, limit: int, what: str) -> bytes:
    """The body, at most ``limit`` bytes (RegistryBadContent beyond)."""
    chunks, total = [], 0
    try:
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise RegistryBadContent(host, f"the {what} is larger than {limit} bytes")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise RegistryUnreachable(
            host, f"reading the {what} failed: {describe_http_error(exc)}"
        ) from None
    return b"".join(chunks)


def registry_words(host: str, response: httpx.Response) -> str:
    """The registry's own explanation: its ``errors[].message``, else the text of its body
    (a proxy's plain or HTML page, tags and runs of spaces dropped), after the status line;
    at most MAX_WORDS characters."""
    body = _body_prefix(response, MAX_ERROR_BYTES) if response.request.method != "HEAD" else b""
    words: list[str] = []
    try:
        doc = json.loads(body)
        for err in doc.get("errors") or []:
            code, message = err.get("code", ""), err.get("message", "")
            words.append(f"{code}: {message}" if code and message else str(code or message))
        if not words and isinstance(doc.get("details"), str):
            words.append(doc["details"])
    except (ValueError, AttributeError, TypeError):
        pass
    status_line = f"{response.status_code} {response.reason_phrase}"
    text = "; ".join(w for w in words if w)
    if not text:
        page = _SPACE.sub(" ", _TAG.sub(" ", body.decode("utf-8", "replace"))).strip()
        page = "".join(c if c.isprintable() else "?" for c in page)
        text = f"{status_line}: {page}" if page and page != status_line else status_line
    return text if len(text) <= MAX_WORDS else text[: MAX_WORDS - 3] + "..."


def _body_prefix(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (b"" when reading it fails): enough to explain."""
    chunks, total = [], 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk[: limit - total])
            total += len(chunks[-1])
            if total >= limit:
                break
    except httpx.HTTPError:
        return b""
    return b"".join(chunks)


def raise_for(repo: Repository, response: httpx.Response, *, token_service: bool = False) -> None:
    status = response.status_code
    words = registry_words(repo.host, response)
    where = "token service" if token_service else repo.name
    if status == 401:
        raise RegistryUnauthorized(
            repo.host, f"authentication refused for {where}: {words}", status
        )
    if status == 403:
        raise RegistryForbidden(repo.host, f"access denied to {where}: {words}", status)
    if status == 404 and not token_service:
        raise RegistryNotFound(repo.host, f"not found: {words}", status)
    if status >= 500 or status == 429:
        raise RegistryUnreachable(repo.host, f"answered {status}: {words}", status)
    raise RegistryRefused(repo.host, f"answered {status}: {words}", status)
