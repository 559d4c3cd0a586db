"""The token file: principals, the SHA-256 of their bearer tokens and their role bindings.

YAML (or JSON, which is YAML too), a list of entries::

    - name: ci                      # the principal
      token: sha256:9f86d0...       # sha256 of the token, never the token itself
      roles:
        operator: [team-a, team-b]  # a list of namespaces ("" = the global namespace)
        viewer: "*"                 # or "*": every namespace
    - name: deployer.example.com    # no token: a mutual-TLS client with this certificate CN
      roles: {editor: ["*"]}

The file is re-read when it changes (checked on each call by its mtime, size and inode), so
tokens can be added and revoked without a restart. A file that fails to load keeps the last
good one in force (and the error is logged); at start-up it is an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from porter_bundle.auth.roles import ALL_NAMESPACES, ROLES, Principal

log = logging.getLogger(__name__)

HASH_PREFIX = "sha256:"


def hash_token(token: str) -> str:
    """The token file form of a token: ``sha256:<hex>``."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class TokenFileError(ValueError):
    """The token file cannot be read or is malformed (the message never holds a token)."""


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    digest: bytes | None


def parse(text: str, source: str = "token file") -> list[_Entry]:
    """The entries of a token file's text; :class:`TokenFileError` when malformed."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TokenFileError(f"{source}: not YAML or JSON: {exc}") from None
    if doc is None:
        doc = []
    if not isinstance(doc, list):
        raise TokenFileError(f"{source}: must be a list of entries")
    entries: list[_Entry] = []
    names: set[str] = set()
    for i, item in enumerate(doc):
        where = f"{source}: entry {i}"
        if not isinstance(item, dict):
            raise TokenFileError(f"{where}: must be a mapping")
        unknown = set(item) - {"name", "token", "roles"}
        if unknown:
            raise TokenFileError(f"{where}: unknown keys {sorted(unknown)}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise TokenFileError(f"{where}: name must be a non-empty string")
        if name in names:
            raise TokenFileError(f"{where}: name {name!r} appears twice")
        names.add(name)
        digest = _digest(item.get("token"), where)
        if digest is not None and any(e.digest == digest for e in entries):
            raise TokenFileError(f"{where}: {name!r} has the same token as another entry")
        entries.append(_Entry(Principal.bound(name, _roles(item.get("roles"), where)), digest))
    return entries


def _digest(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(HASH_PREFIX):
        raise TokenFileError(
            f"{where}: token must be {HASH_PREFIX}<64 hex digits> (the token's hash)"
        )
    hexpart = value[len(HASH_PREFIX) :]
    try:
        raw = bytes.fromhex(hexpart)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise TokenFileError(
            f"{where}: token must be {HASH_PREFIX}<64 hex digits> (the token's hash)"
        )
    return raw


def _roles(value: Any, where: str) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TokenFileError(f"{where}: roles must map a role to namespaces")
    roles: dict[str, list[str]] = {}
    for role, namespaces in value.items():
        if role not in ROLES:
            raise TokenFileError(f"{where}: unknown role {role!r} (one of {', '.join(ROLES)})")
        if namespaces == ALL_NAMESPACES:
            namespaces = [ALL_NAMESPACES]
        if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
            raise TokenFileError(f'{where}: role {role}: a list of namespaces or "*"')
        roles[role] = namespaces
    return roles


class TokenFile:
    """A token file, re-read whenever it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._entries: list[_Entry] = []
        self._by_name: Mapping[str, Principal] = {}
        self._reload(initial=True)

    def authenticate(self, token: str) -> Principal | None:
        """The principal whose token this is, or None. Compares every entry in constant time."""
        self._refresh()
        presented = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        for entry in self._entries:
            if entry.digest is not None and hmac.compare_digest(entry.digest, presented):
                found = entry.principal
        return found

    def principal(self, name: str) -> Principal | None:
        """The entry named ``name`` (a mutual-TLS client's certificate CN), or None."""
        self._refresh()
        return self._by_name.get(name)

    def _refresh(self) -> None:
        try:
            stamp = _stamp(self.path)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._reload(initial=False)

    def _reload(self, *, initial: bool) -> None:
        with self._lock:
            try:
                stamp = _stamp(self.path)
                if stamp == self._stamp and not initial:
                    return
                entries = parse(self.path.read_text(), str(self.path))
            except (OSError, TokenFileError) as exc:
                if initial:
                    raise TokenFileError(str(exc)) from None
                log.error("token file not reloaded, the last good one stays in force: %s", exc)
                try:
                    self._stamp = _stamp(self.path)  # do not retry until it changes again
                except OSError:
                    self._stamp = None
                return
            self._entries = entries
            self._by_name = {e.principal.name: e.principal for e in entries}
            self._stamp = stamp
            if not initial:
                log.info("token file %s reloaded: %d principals", self.path, len(entries))


def _stamp(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
