"""Masking secret values in text the server writes: run messages, run logs, log lines.

A run knows its secrets (credential values and sensitive parameter values); whatever
the invocation image prints or an error says passes through a :class:`Redactor`
before it is stored, served or logged. The rules:

* **Logs keep their length.** In a run's log every byte of a secret becomes ``*``
  (:data:`LOG_MASK_BYTE`), so masking never moves an offset: what a follower received at
  an offset is where it stays, whether the log is masked live, masked again when the run's
  sensitive outputs become known, or completed from the container after a restart. Run
  messages and the server's log lines, which nobody addresses by offset, show ``***``.
* **Short secrets are masked as whole tokens.** A secret shorter than
  :data:`WHOLE_TOKEN_BELOW` characters is masked only where it is not part of a longer
  word: a 3-character credential ``tok`` masks ``TOKEN=tok`` but leaves ``token=`` alone.
  A word character is an ASCII letter, digit or underscore; the rule applies at an edge of
  the secret that is itself a word character. Every secret is masked, however short (a
  sensitive value ``no`` masks the word "no" standing alone: safe before readable).
  Longer secrets are masked wherever they occur.
* **Chunks.** :class:`StreamRedactor` masks a log that arrives in chunks: a tail that
  could begin a secret (or end a short one, until the next byte shows it is whole) waits
  for the next chunk, so a secret split across chunks is masked too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "***"
"""What a secret becomes in a run message or a log line."""
LOG_MASK_BYTE = b"*"
"""What each byte of a secret becomes in a run's log."""
WHOLE_TOKEN_BELOW = 8
"""Secrets shorter than this (characters) are masked only as whole tokens."""

_WORD = "A-Za-z0-9_"


def _pattern(secret: str) -> str:
    """The regular expression of one secret (see the module docstring for the rule)."""
    pattern = re.escape(secret)
    if len(secret) < WHOLE_TOKEN_BELOW:
        if re.match(f"[{_WORD}]", secret[0]):
            pattern = f"(?<![{_WORD}])" + pattern
        if re.match(f"[{_WORD}]", secret[-1]):
            pattern += f"(?![{_WORD}])"
    return pattern


class Redactor:
    """Masks known secret values: ``***`` in text, as many ``*`` as bytes in a log."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first: a secret that contains another is masked whole.
        self._texts = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets = [s.encode() for s in self._texts]
        self._open_ended = [
            len(s) < WHOLE_TOKEN_BELOW and bool(re.match(f"[{_WORD}]", s[-1])) for s in self._texts
        ]
        patterns = [_pattern(s) for s in self._texts]
        self._text_re = re.compile("|".join(patterns)) if patterns else None
        self._bytes_re = re.compile("|".join(patterns).encode()) if patterns else None

    def __bool__(self) -> bool:
        return bool(self._texts)

    def text(self, text: str) -> str:
        """``text`` with every secret masked as ``***``."""
        return self._text_re.sub(MASK, text) if self._text_re else text

    def data(self, data: bytes) -> bytes:
        """``data`` with every byte of every secret (UTF-8) masked: the same length."""
        if self._bytes_re is None:
            return data
        return self._bytes_re.sub(lambda m: LOG_MASK_BYTE * len(m.group()), data)

    def plus(self, secrets: Iterable[str]) -> Redactor:
        """A redactor masking these secrets too."""
        return Redactor([*self._texts, *secrets])

    def stream(self) -> StreamRedactor:
        """A masker for a byte stream that arrives in chunks."""
        return StreamRedactor(self)

    def spans(self, data: bytes, start: int = 0) -> list[tuple[int, int]]:
        """Where secrets are in ``data`` from ``start`` on: (start, end) of each match, in
        order; the bytes before ``start`` only tell whether a short secret is whole."""
        if self._bytes_re is None:
            return []
        return [m.span() for m in self._bytes_re.finditer(data, start)]

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of ``data`` could begin a secret, or end a short one
        whose next byte decides whether it is a whole token (to wait for more)."""
        longest = 0
        for secret, open_ended in zip(self._secrets, self._open_ended, strict=True):
            most = min(len(secret) if open_ended else len(secret) - 1, len(data))
            # Candidate starts: the secret's first byte within the last `most` bytes.
            start = len(data) - most
            while most > longest:
                at = data.find(secret[:1], start)
                if at < 0:
                    break
                n = len(data) - at
                if n <= longest:
                    break
                if secret.startswith(data[at:]):
                    longest = n
                    break
                start = at + 1
                most = n - 1
        return longest


class StreamRedactor:
    """Masks secrets in a chunked byte stream, also those split across chunks.

    :meth:`feed` returns what is safe to pass on, masked; a tail that could still become
    (part of) a secret waits for the next chunk, or :meth:`flush`. The output has exactly
    the input's length, in order.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""
        """Raw bytes not passed on yet."""
        self._before = b""
        """The last byte passed on: whether a short secret right after it is a whole token."""

    def feed(self, chunk: bytes) -> bytes:
        """The masked part of what arrived so far that can be passed on now."""
        if not self._redactor:
            return chunk
        data = self._pending + chunk
        cut = len(data) - self._redactor.held_back(data)
        return self._pass_on(data, cut)

    def flush(self) -> bytes:
        """The rest, masked, at the end of the stream (which ends any token)."""
        data, self._pending = self._pending, b""
        return self._pass_on(data, len(data)) if data else b""

    def _pass_on(self, data: bytes, cut: int) -> bytes:
        context = len(self._before)
        spans: list[tuple[int, int]] = []
        for start, end in self._redactor.spans(self._before + data, context):
            start, end = start - context, end - context
            if end > cut:
                # The next bytes may change this match: wait for them, the match whole.
                cut = min(cut, start)
                break
            spans.append((start, end))
        out = bytearray(data[:cut])
        for start, end in spans:
            out[start:end] = LOG_MASK_BYTE * (end - start)
        if cut:
            self._before = data[cut - 1 : cut]
        self._pending = data[cut:]
        return bytes(out)


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
    "LOG_MASK_BYTE",
    "MASK",
    "WHOLE_TOKEN_BELOW",
    "LogRedactingFilter",
    "Redactor",
    "StreamRedactor",
    "register",
    "unregister",
]
