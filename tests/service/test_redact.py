"""Masking secrets in messages, chunked logs and log records."""

from __future__ import annotations

import logging

import pytest

from porter_bundle.service.redact import (
    LogRedactingFilter,
    Redactor,
    register,
    unregister,
)


def test_text_and_bytes_mask_every_occurrence_longest_first():
    r = Redactor(["abc-secret", "abc-secret-longer", "no", ""])
    assert r.text("x abc-secret-longer y abc-secret z") == "x *** y *** z"
    assert r.data(b"abc-secret!") == b"***!"
    assert r.text("no way") == "no way"  # too short to mask without masking words
    assert not Redactor(["ab", ""])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_stream_masks_secrets_split_across_chunks(size):
    r = Redactor(["hunter2-pass", "tok-99"])
    text = b"login hunter2-pass then tok-99 and hunter2 alone, tok-9"
    stream = r.stream()
    out = b"".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size))
    out += stream.flush()
    assert out == b"login *** then *** and hunter2 alone, tok-9"


def test_stream_holds_back_only_a_possible_start_of_a_secret():
    stream = Redactor(["secret-value"]).stream()
    assert stream.feed(b"plain text sec") == b"plain text "
    assert stream.feed(b"ond line\n") == b"second line\n"
    assert stream.feed(b"x secret-va") == b"x "
    assert stream.feed(b"lue y") == b"*** y"
    assert stream.flush() == b""


def test_stream_without_secrets_passes_chunks_through():
    stream = Redactor([]).stream()
    assert stream.feed(b"abc") == b"abc" and stream.flush() == b""


def test_log_filter_masks_registered_secrets_in_messages_and_tracebacks(caplog):
    caplog.handler.addFilter(LogRedactingFilter())
    log = logging.getLogger("porter_bundle.test_redact")
    register("run-1", Redactor(["s3cr3t-token"]))
    try:
        log.warning("value %s here", "s3cr3t-token")
        try:
            raise RuntimeError("failed with s3cr3t-token")
        except RuntimeError:
            log.exception("boom")
    finally:
        unregister("run-1")
    log.warning("after %s", "s3cr3t-token")  # no longer registered
    assert "value *** here" in caplog.text
    assert "failed with ***" in caplog.text
    assert caplog.text.count("s3cr3t-token") == 1 and "after s3cr3t-token" in caplog.text
