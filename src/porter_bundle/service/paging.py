"""Page tokens and page sizes shared by every list call.

A page token is opaque to clients: URL-safe base64 of a small JSON object holding
the sort key of the last row served, a fingerprint of the request's filters (a
token is only valid with the filters it was issued for) and, for filtered lists,
the total counted on the first page (so later pages need no count query).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from porter_bundle.errors import InvalidArgument, Violations
from porter_bundle.store import Page, PageSpec
from porter_bundle.validation import unsafe_data

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_SKIP = 100_000  # skip is linear (OFFSET); page tokens are the way through long lists
_TOKEN_VERSION = 1
_MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True)
class PageRequest:
    """What a client asked for: validated size, cursor and skip, plus the filter fingerprint."""

    spec: PageSpec
    fingerprint: str
    total: int | None


@dataclass(frozen=True)
class PageResult:
    """One page of stored message bytes, the next page token and the total."""

    docs: list[bytes]
    next_page_token: str
    total_size: int


def fingerprint(*filters: Any) -> str:
    """A short stable digest of a request's filters."""
    raw = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=sorted)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def parse_page_request(
    page_size: int, page_token: str, skip: int, *, filters_fingerprint: str, key_length: int
) -> PageRequest:
    """Validates paging fields; INVALID_ARGUMENT names each bad one."""
    v = Violations()
    if page_size < 0:
        v.add("page_size", "must not be negative")
    if skip < 0:
        v.add("skip", "must not be negative")
    elif skip > MAX_SKIP:
        v.add("skip", f"must be at most {MAX_SKIP}")
    after: tuple[str, ...] | None = None
    total: int | None = None
    if page_token:
        decoded = _decode(page_token, key_length)
        if decoded is None:
            v.add("page_token", "is not a page token issued by this server")
        elif decoded[0] != filters_fingerprint:
            v.add(
                "page_token", "was issued for different filters; repeat the first request's filters"
            )
        else:
            _, after, total = decoded
    v.raise_if_any(reason="INVALID_PAGE_REQUEST" if page_token else None)
    size = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
    return PageRequest(PageSpec(limit=size, after=after, skip=skip), filters_fingerprint, total)


def finish_page(
    request: PageRequest, page: Page, count: Callable[[], int], *, carry_total: bool
) -> PageResult:
    """Builds the next token; counts (or reuses the carried total) for ``total_size``."""
    total = request.total if request.total is not None and carry_total else count()
    token = ""
    if page.next_after is not None:
        token = _encode(request.fingerprint, page.next_after, total if carry_total else None)
    return PageResult(page.docs, token, total)


def _encode(fp: str, after: tuple[str, ...], total: int | None) -> str:
    body: dict[str, Any] = {"v": _TOKEN_VERSION, "f": fp, "a": list(after)}
    if total is not None:
        body["t"] = total
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str, key_length: int) -> tuple[str, tuple[str, ...], int | None] | None:
    if len(token) > _MAX_TOKEN_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(body, dict) or body.get("v") != _TOKEN_VERSION:
        return None
    fp, after, total = body.get("f"), body.get("a"), body.get("t")
    if not isinstance(fp, str) or not isinstance(after, list) or len(after) != key_length:
        return None
    if not all(isinstance(k, str) for k in after) or unsafe_data(body) is not None:
        return None
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, int) or not 0 <= total < 2**63
    ):
        return None
    return fp, tuple(after), total


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "InvalidArgument",
    "PageRequest",
    "PageResult",
    "fingerprint",
    "finish_page",
    "parse_page_request",
]
