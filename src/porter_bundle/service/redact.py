"""Masking secret values in text the server writes: run messages, run logs, log lines.

A run knows its secrets (credential values and sensitive parameter values); whatever
the invocation image prints or an error says passes through a :class:`Redactor`
before it is stored or logged, every occurrence of a secret replaced by ``***``.
Secrets shorter than :data:`MIN_SECRET_LENGTH` characters are not masked: they would
mask ordinary words (a sensitive flag "no", a port "80").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LENGTH = 3


class Redactor:
    """Replaces known secret values with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        # Longest first: a secret that contains another is masked whole.
        self._texts = sorted(found, key=len, reverse=True)
        self._bytes = [s.encode() for s in self._texts]

    def __bool__(self) -> bool:
        return bool(self._texts)

    def text(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self._texts:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        """``data`` with every secret (UTF-8) masked."""
        for secret in self._bytes:
            if secret in data:
                data = data.replace(secret, MASK.encode())
        return data

    def plus(self, secrets: Iterable[str]) -> Redactor:
        """A redactor masking these secrets too."""
        return Redactor([*self._texts, *secrets])

    def stream(self) -> StreamRedactor:
        """A masker for a byte stream that arrives in chunks."""
        return StreamRedactor(self)

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of ``data`` could begin a secret (to wait for more)."""
        longest = 0
        for secret in self._bytes:
            for n in range(min(len(secret) - 1, len(data)), longest, -1):
                if data.endswith(secret[:n]):
                    longest = n
                    break
        return longest


class StreamRedactor:
    """Masks secrets in a chunked byte stream, also those split across chunks.

    :meth:`feed` returns what is safe to pass on: everything except a tail that could be
    the start of a secret, which waits for the next chunk (or :meth:`flush`).
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The masked part of what arrived so far that can be passed on now."""
        if not self._redactor:
            return chunk
        data = self._redactor.data(self._pending + chunk)
        keep = self._redactor.held_back(data)
        self._pending = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep] if keep else data

    def flush(self) -> bytes:
        """The rest, at the end of the stream."""
        rest, self._pending = self._pending, b""
        return rest


# --- log records ---------------------------------------------------------------------------

_active: dict[object, Redactor] = {}
_lock = threading.Lock()


def register(owner: object, redactor: Redactor) -> None:
    """Masks ``redactor``'s secrets in every log record until :func:`unregister`."""
    if redactor:
        with _lock:
            _active[owner] = redactor


def unregister(owner: object) -> None:
    """Stops masking the secrets :func:`register` gave for ``owner``."""
    with _lock:
        _active.pop(owner, None)


_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class LogRedactingFilter(logging.Filter):
    """A handler filter masking the secrets of active runs in messages, tracebacks and the
    text fields a record carries besides (``extra=``: the structured log's event fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            redactors = list(_active.values())
        if not redactors:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        extras = {
            k: v
            for k, v in vars(record).items()
            if k not in _RECORD_ATTRIBUTES and isinstance(v, str)
        }
        for r in redactors:
            message = r.text(message)
            if record.exc_text:
                record.exc_text = r.text(record.exc_text)
            extras = {k: r.text(v) for k, v in extras.items()}
        record.msg, record.args = message, None
        for key, value in extras.items():
            setattr(record, key, value)
        return True


__all__ = [
    "MASK",
    "LogRedactingFilter",
    "Redactor",
    "StreamRedactor",
    "register",
    "unregister",
]
