"""Masking secrets in messages, chunked logs and log records."""

from __future__ import annotations

import logging
import random

import pytest

from porter_bundle.service.redact import (
    WHOLE_TOKEN_BELOW,
    LogRedactingFilter,
    Redactor,
    register,
    unregister,
)


def test_text_and_bytes_mask_every_occurrence_longest_first():
    r = Redactor(["abc-secret", "abc-secret-longer", ""])
    assert r.text("x abc-secret-longer y abc-secret z") == "x *** y *** z"
    # In a log each byte becomes a star: masking never moves an offset.
    assert r.data(b"abc-secret!") == b"**********!"
    assert r.data(b"abc-secret-longer") == b"*" * 17
    assert not Redactor([""])


def test_short_secrets_are_masked_as_whole_tokens_only():
    r = Redactor(["tok"])
    # The case: a 3-character credential must not turn token= into ***en=.
    assert r.text("token= TOKEN=tok tok.") == "token= TOKEN=*** ***."
    assert r.data(b"tokens tok\n") == b"tokens ***\n"
    assert r.data(b"xtok tok_ 1tok") == b"xtok tok_ 1tok"
    # Any length is masked (two characters, one), as a whole token.
    assert Redactor(["no"]).text("no, not now") == "***, not now"
    assert Redactor(["7"]).text("port 7 of 17") == "port *** of 17"
    # An edge that is no word character matches anywhere.
    assert Redactor(["=ab"]).text("x=ab c x=abc") == "x*** c x=abc"
    # From WHOLE_TOKEN_BELOW characters on, a secret is masked wherever it occurs.
    long = "x" * WHOLE_TOKEN_BELOW
    assert Redactor([long]).text(f"a{long}b") == "a***b"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_stream_masks_secrets_split_across_chunks(size):
    r = Redactor(["hunter2-pass", "tok-99"])
    text = b"login hunter2-pass then tok-99 and hunter2 alone, tok-9"
    stream = r.stream()
    out = b"".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size))
    out += stream.flush()
    assert out == b"login ************ then ****** and hunter2 alone, tok-9"


def test_stream_holds_back_only_a_possible_start_of_a_secret():
    stream = Redactor(["secret-value"]).stream()
    assert stream.feed(b"plain text sec") == b"plain text "
    assert stream.feed(b"ond line\n") == b"second line\n"
    assert stream.feed(b"x secret-va") == b"x "
    assert stream.feed(b"lue y") == b"************ y"
    assert stream.flush() == b""


def test_stream_waits_for_the_byte_after_a_short_secret():
    stream = Redactor(["tok"]).stream()
    assert stream.feed(b"a tok") == b"a "  # "tok" or "token"? the next byte says
    assert stream.feed(b"en b ") == b"token b "
    assert stream.feed(b"tok") == b""
    assert stream.feed(b" c") == b"*** c"
    assert stream.feed(b" tok") == b" "
    assert stream.flush() == b"***"  # the end of the log ends the token
    xtok = Redactor(["tok"]).stream()  # the byte before counts across chunks too
    assert xtok.feed(b"x") + xtok.feed(b"tok ") + xtok.flush() == b"xtok "


def test_stream_output_is_the_whole_masking_in_any_chunking():
    rnd = random.Random(13)
    for _ in range(2000):
        secrets = ["".join(rnd.choice("ab_-x") for _ in range(rnd.randint(1, 10)))]
        secrets += ["".join(rnd.choice("ab_-x") for _ in range(rnd.randint(1, 10)))]
        r = Redactor(secrets)
        data = bytes(rnd.choice(b"ab_ -=\nxyz") for _ in range(rnd.randint(0, 60)))
        stream, out, i = r.stream(), b"", 0
        while i < len(data):
            n = rnd.randint(1, 7)
            out += stream.feed(data[i : i + n])
            i += n
        out += stream.flush()
        assert out == r.data(data), (secrets, data)
        assert len(out) == len(data)


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
