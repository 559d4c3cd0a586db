"""Building responses from stored message bytes without decoding them.

Every list response of the API has the same shape: field 1 a repeated message,
field 2 a string, field 3 a varint. Protobuf's encoding of a repeated message
field is the concatenation of (tag, length, bytes) per element, so a page of
stored messages becomes a response by concatenation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from google.protobuf.message import Message

_ITEMS_TAG = b"\x0a"  # field 1, length-delimited
_TOKEN_TAG = b"\x12"  # field 2, length-delimited
_COUNT_TAG = b"\x18"  # field 3, varint


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def list_response(items: Iterable[bytes], text: str, number: int) -> bytes:
    """Serialized ``{repeated items = 1; string text = 2; int number = 3}``."""
    parts: list[bytes] = []
    for item in items:
        parts += (_ITEMS_TAG, varint(len(item)), item)
    if text:
        raw = text.encode()
        parts += (_TOKEN_TAG, varint(len(raw)), raw)
    if number:
        parts += (_COUNT_TAG, varint(number))
    return b"".join(parts)


def serialize(response: Message | bytes) -> bytes:
    """Response serializer that passes pre-encoded responses through."""
    if isinstance(response, bytes):
        return response
    return response.SerializeToString()


class EncodingCache:
    """Encoded responses by key, for messages many streams send alike (a log chunk goes to
    every follower of a run): each is encoded once. Bounded by size; emptied when full."""

    def __init__(self, max_bytes: int = 4 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._size = 0
        self._encoded: dict[Hashable, bytes] = {}

    def get(self, key: Hashable, build: Callable[[], Message]) -> bytes:
        """The encoding of ``build()`` for ``key``, built the first time."""
        found = self._encoded.get(key)
        if found is None:
            found = build().SerializeToString()
            if self._size + len(found) > self._max_bytes:
                self._encoded.clear()
                self._size = 0
            self._encoded[key] = found
            self._size += len(found)
        return found
