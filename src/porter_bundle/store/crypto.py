"""Encryption of secret columns at rest: AES-256-GCM under a ring of keys.

A stored value is the text ``pbenc1:`` followed by the base64 of
``b"pbenc1" | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag``. The key id
is the first 4 bytes of the SHA-256 of the key, so the ring finds the key that
sealed a value however many keys it holds. The associated data names the table,
primary key and column of the value: a ciphertext copied into another row or
column does not decrypt.

The first key of a :class:`Keyring` encrypts; every key decrypts, which is how keys
are rotated (prepend a new key, then re-encrypt at leisure). Values without the
prefix were written before encryption existed and are read as they are.

Errors never carry a value, plain or encrypted.

Key files hold one base64 key (32 bytes) per line, newest first; blank lines and
``#`` comments are ignored. They must not be readable by anyone but their owner.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pbenc1:"
_MAGIC = b"pbenc1"
_PREFIX_BYTES = PREFIX.encode()
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
_TAG_BYTES = 16
_ID_AT = len(_MAGIC)
_NONCE_AT = _ID_AT + KEY_ID_BYTES
_SEALED_AT = _NONCE_AT + NONCE_BYTES


class CryptoError(Exception):
    """A value cannot be decrypted (damaged, moved to another row, or not ours)."""


class UnknownKey(CryptoError):
    """A value was encrypted with a key the ring does not hold."""


class KeyFileError(ValueError):
    """A key file or key setting cannot be used (the message names the file, never a key)."""


def key_id(key: bytes) -> bytes:
    """The 4-byte id of a key (a prefix of its SHA-256)."""
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """A key as a key file line holds it (base64)."""
    return base64.b64encode(key).decode()


def parse_key(text: str, where: str) -> bytes:
    """A base64 key of 32 bytes; :class:`KeyFileError` naming ``where`` otherwise."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{where}: not a base64 key") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{where}: a key must be {KEY_BYTES} bytes (base64), not {len(key)}")
    return key


def associated_data(table: str, primary_key: Sequence[str], column: str) -> bytes:
    """What binds a ciphertext to its place: table, primary key values and column."""
    return "\x00".join([table, *primary_key, column]).encode()


def is_encrypted(value: str | bytes) -> bool:
    """Whether a stored value is a ciphertext of ours (else a clear value from before)."""
    prefix = PREFIX if isinstance(value, str) else _PREFIX_BYTES
    return value.startswith(prefix)  # type: ignore[arg-type]


class Keyring:
    """Keys newest first: the first encrypts, all decrypt."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KeyFileError("an encryption keyring needs at least one key")
        self._keys: dict[bytes, AESGCM] = {}
        self._order: list[bytes] = []
        for key in keys:
            if len(key) != KEY_BYTES:
                raise KeyFileError(f"an encryption key must be {KEY_BYTES} bytes")
            kid = key_id(key)
            if kid not in self._keys:
                self._keys[kid] = AESGCM(key)
                self._order.append(kid)
        self._primary = self._order[0]

    @classmethod
    def generate(cls) -> Keyring:
        """A ring of one new random key (tests, tools)."""
        return cls([new_key()])

    @property
    def primary_id(self) -> str:
        """Hex id of the key that encrypts."""
        return self._primary.hex()

    @property
    def key_ids(self) -> list[str]:
        """Hex ids of every key, newest first."""
        return [k.hex() for k in self._order]

    def encrypt(self, plaintext: bytes, ad: bytes) -> str:
        """The stored text of ``plaintext`` sealed with the newest key, bound to ``ad``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[self._primary].encrypt(nonce, plaintext, ad)
        blob = _MAGIC + self._primary + nonce + sealed
        return PREFIX + base64.b64encode(blob).decode()

    def decrypt(self, stored: str | bytes, ad: bytes) -> bytes:
        """The plaintext of a value :meth:`encrypt` made; clear (legacy) values as they are."""
        if not is_encrypted(stored):
            return stored.encode() if isinstance(stored, str) else bytes(stored)
        blob = _unpack(stored)
        kid, nonce = blob[_ID_AT:_NONCE_AT], blob[_NONCE_AT:_SEALED_AT]
        aead = self._keys.get(kid)
        if aead is None:
            raise UnknownKey(
                f"a value was encrypted with key {kid.hex()}, which the keyring does not hold "
                f"(it holds {', '.join(self.key_ids)})"
            )
        try:
            return aead.decrypt(nonce, blob[_SEALED_AT:], ad)
        except InvalidTag:
            raise CryptoError(
                f"a value encrypted with key {kid.hex()} does not decrypt: it was altered or "
                "moved from another row"
            ) from None

    def needs_reencryption(self, stored: str | bytes) -> bool:
        """Whether a stored value is clear or sealed with an older key than the newest."""
        return stored_key_id(stored) != self.primary_id


def stored_key_id(stored: str | bytes) -> str | None:
    """Hex id of the key that sealed a stored value; None for a clear (legacy) value."""
    if not is_encrypted(stored):
        return None
    return _unpack(stored)[_ID_AT:_NONCE_AT].hex()


def _unpack(stored: str | bytes) -> bytes:
    text = stored if isinstance(stored, str) else bytes(stored).decode("ascii", "replace")
    try:
        blob = base64.b64decode(text[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("an encrypted value is not valid base64") from None
    if not blob.startswith(_MAGIC) or len(blob) < _SEALED_AT + _TAG_BYTES:
        raise CryptoError("an encrypted value is truncated or not in the pbenc1 format")
    return blob


# --- key files ------------------------------------------------------------------------


def read_key_file(path: Path) -> Keyring:
    """The keys of a key file (newest first); refuses a file others may read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"encryption key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"encryption key file {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"encryption key file {path} has mode {mode:04o}: others could read the key; "
            f"make it 0600 (chmod 600 {path})"
        )
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"encryption key file {path} cannot be read: {exc}") from None
    keys = [
        parse_key(line, f"encryption key file {path}, line {n}")
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not keys:
        raise KeyFileError(f"encryption key file {path} holds no key")
    return Keyring(keys)


def create_key_file(path: Path) -> Keyring:
    """Writes a new key file of one random key (mode 0600); fails if the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encode_key(key) + "\n")
    return Keyring([key])


def rotate_key_file(path: Path) -> str:
    """Puts a new key first in a key file (older keys stay, to decrypt); returns its id."""
    read_key_file(path)  # checks the mode and the content first
    lines = path.read_text().splitlines()
    key = new_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join([encode_key(key), *lines]) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return key_id(key).hex()


__all__ = [
    "PREFIX",
    "CryptoError",
    "KeyFileError",
    "Keyring",
    "UnknownKey",
    "associated_data",
    "create_key_file",
    "is_encrypted",
    "read_key_file",
    "rotate_key_file",
    "stored_key_id",
]
