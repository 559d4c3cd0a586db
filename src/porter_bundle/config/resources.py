"""What the settings point at: the data directory, the encryption keys, registry credentials."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from porter_bundle.config.settings import DATA_DIR_KEY_FILE, Settings, default_data_dir, env_of

if TYPE_CHECKING:
    from porter_bundle.store import Keyring

log = logging.getLogger(__name__)

KEY_FILE_SUFFIX = ".key"


def default_key_file(database_url: str, data_dir: Path | None = None) -> Path:
    """Where the encryption key file is by default: ``<database file>.key`` beside a SQLite
    database, else ``porter-bundle.key`` in the data directory (``data_dir``, else the default
    one)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database + KEY_FILE_SUFFIX)
    return (data_dir or default_data_dir()) / DATA_DIR_KEY_FILE


def key_file_path(settings: Settings) -> Path:
    """The key file the settings name, or the default one."""
    if settings.encryption_key_file:
        return Path(settings.encryption_key_file)
    return default_key_file(settings.database_url, settings.data_path)


def open_keyring(settings: Settings) -> Keyring:
    """The keys that encrypt secrets: from ``encryption_key``, else the key file named, else
    the default key file, which is created (mode 0600) when missing. A named key file must
    exist. ``KeyFileError`` (a ValueError) when they cannot be used; never logs a key."""
    from porter_bundle.store import (
        Keyring,
        create_key_file,
        parse_key,
        read_key_file,
    )

    if settings.encryption_key:
        keys = [
            parse_key(part, f"${env_of('encryption_key')}, key {n}")
            for n, part in enumerate(settings.encryption_key.get_secret_value().split(","), 1)
            if part.strip()
        ]
        return Keyring(keys)
    path = key_file_path(settings)
    if settings.encryption_key_file:
        return read_key_file(path)
    try:
        keyring = create_key_file(path)
    except FileExistsError:
        return read_key_file(path)
    log.warning(
        "created encryption key file %s (key %s, mode 0600): it encrypts the secrets in the "
        "database; back it up with the database, which is unreadable without it",
        path,
        keyring.primary_id,
    )
    return keyring


def load_registry_auths(path: str) -> dict[str, tuple[str, str]]:
    """Registry host -> (user, password) from a docker ``config.json`` (its ``auths`` entries)."""
    import base64
    import binascii
    import json

    if not path:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read registry config {path}: {exc}") from None
    auths: dict[str, tuple[str, str]] = {}
    for host, entry in (doc.get("auths") or {}).items():
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ValueError(
                    f"registry config {path}: the auth of {host} is not base64 user:password"
                ) from None
        if user and password:
            auths[host.removeprefix("https://").removeprefix("http://").rstrip("/")] = (
                user,
                password,
            )
    return auths
