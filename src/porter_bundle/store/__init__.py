"""Persistence: SQLModel tables, migrations and the typed queries over them."""

from porter_bundle.store.crypto import CryptoError, KeyFileError, Keyring, UnknownKey
from porter_bundle.store.store import (
    KIND_BUNDLE,
    KIND_CREDENTIAL_SET,
    KIND_INSTALLATION,
    KIND_PARAMETER_SET,
    DuplicateKey,
    ListFilter,
    Page,
    PageSpec,
    Store,
)

__all__ = [
    "KIND_BUNDLE",
    "KIND_CREDENTIAL_SET",
    "KIND_INSTALLATION",
    "KIND_PARAMETER_SET",
    "CryptoError",
    "DuplicateKey",
    "KeyFileError",
    "Keyring",
    "ListFilter",
    "Page",
    "PageSpec",
    "Store",
    "UnknownKey",
]
