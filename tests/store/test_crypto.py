"""The pbenc1 format, its binding to a row, and keys that rotate."""

from __future__ import annotations

import base64

import pytest

from porter_bundle.store.crypto import (
    PREFIX,
    CryptoError,
    KeyFileError,
    Keyring,
    UnknownKey,
    associated_data,
    is_encrypted,
    new_key,
    stored_key_id,
)

AD = associated_data("runs", ["01ABC"], "parameters")


def test_format_is_prefix_then_base64_of_magic_key_id_nonce_and_sealed_text():
    ring = Keyring.generate()
    stored = ring.encrypt(b"hunter2", AD)
    assert stored.startswith(PREFIX) and is_encrypted(stored) and is_encrypted(stored.encode())
    blob = base64.b64decode(stored[len(PREFIX) :])
    assert blob[:6] == b"pbenc1"
    assert blob[6:10].hex() == ring.primary_id == stored_key_id(stored)
    assert len(blob) == 6 + 4 + 12 + len(b"hunter2") + 16
    assert b"hunter2" not in blob
    assert ring.decrypt(stored, AD) == b"hunter2"
    assert ring.decrypt(stored.encode(), AD) == b"hunter2"


def test_same_value_encrypts_differently_each_time():
    ring = Keyring.generate()
    assert ring.encrypt(b"x", AD) != ring.encrypt(b"x", AD)


@pytest.mark.parametrize(
    "elsewhere",
    [
        associated_data("runs", ["01ABD"], "parameters"),  # another row
        associated_data("value_sets", ["01ABC"], "values"),  # another table and column
        associated_data("runs", ["01ABC"], "doc"),  # another column
    ],
)
def test_a_ciphertext_moved_to_another_place_does_not_decrypt(elsewhere):
    ring = Keyring.generate()
    stored = ring.encrypt(b"secret-value", AD)
    with pytest.raises(CryptoError) as err:
        ring.decrypt(stored, elsewhere)
    assert "secret-value" not in str(err.value)


def test_tampering_is_detected():
    ring = Keyring.generate()
    blob = bytearray(base64.b64decode(ring.encrypt(b"secret-value", AD)[len(PREFIX) :]))
    blob[-1] ^= 1
    with pytest.raises(CryptoError, match="altered"):
        ring.decrypt(PREFIX + base64.b64encode(bytes(blob)).decode(), AD)
    with pytest.raises(CryptoError, match="truncated"):
        ring.decrypt(PREFIX + base64.b64encode(bytes(blob[:20])).decode(), AD)
    with pytest.raises(CryptoError, match="base64"):
        ring.decrypt(PREFIX + "!!!", AD)


def test_unknown_key_is_named_by_id_only():
    key = new_key()
    stored = Keyring([key]).encrypt(b"secret-value", AD)
    other = Keyring.generate()
    with pytest.raises(UnknownKey) as err:
        other.decrypt(stored, AD)
    assert stored_key_id(stored) in str(err.value)
    assert base64.b64encode(key).decode() not in str(err.value)


def test_rotation_newest_key_encrypts_older_keys_still_decrypt():
    old, new = new_key(), new_key()
    before = Keyring([old])
    stored_old = before.encrypt(b"a", AD)
    rotated = Keyring([new, old])
    assert rotated.decrypt(stored_old, AD) == b"a"
    assert rotated.needs_reencryption(stored_old)
    stored_new = rotated.encrypt(b"b", AD)
    assert stored_key_id(stored_new) == rotated.primary_id == rotated.key_ids[0]
    assert not rotated.needs_reencryption(stored_new)
    with pytest.raises(UnknownKey):
        before.decrypt(stored_new, AD)


def test_clear_values_from_before_encryption_are_read_as_they_are():
    ring = Keyring.generate()
    assert ring.decrypt(b'{"p":1}', AD) == b'{"p":1}'
    assert ring.decrypt('"text"', AD) == b'"text"'
    assert stored_key_id(b"{}") is None
    assert ring.needs_reencryption(b"{}")


def test_keys_must_be_32_bytes():
    with pytest.raises(KeyFileError):
        Keyring([b"short"])
    with pytest.raises(KeyFileError):
        Keyring([])
