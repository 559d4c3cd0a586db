"""Server settings: one typed object built from flags and environment variables."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from porter_bundle.store.crypto import Keyring

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:3001"
DEFAULT_GRACE_SECONDS = 10.0
DEFAULT_WORKERS = 8
DATABASE_FILE = "porter-bundle.db"
ENV_ADDRESS = "PORTER_BUNDLE_ADDRESS"
ENV_DATABASE = "PORTER_BUNDLE_DATABASE"
ENV_DATA_DIR = "PORTER_BUNDLE_DATA_DIR"
ENV_CONTAINER_HOST = "PORTER_BUNDLE_CONTAINER_HOST"
ENV_INSECURE_REGISTRIES = "PORTER_BUNDLE_INSECURE_REGISTRIES"
ENV_REGISTRY_CONFIG = "PORTER_BUNDLE_REGISTRY_CONFIG"
DEFAULT_RUN_TIMEOUT_SECONDS = 3600.0
DEFAULT_MAX_CONCURRENT_RUNS = 4
DEFAULT_CANCEL_GRACE_SECONDS = 10.0
ENV_LEGACY_REVEAL_SENSITIVE = "PORTER_BUNDLE_LEGACY_REVEAL_SENSITIVE"
ENV_SCHEMA_CHECK = "PORTER_BUNDLE_SCHEMA_CHECK"
DEFAULT_SCHEMA_CHECK = "exact"
SCHEMA_CHECKS = ("exact", "minor", "major", "none")
DEFAULT_STREAM_HEARTBEAT_SECONDS = 15.0
DEFAULT_STREAM_RECHECK_SECONDS = 5.0
# Encryption of secrets at rest (store.crypto).
ENV_ENCRYPTION_KEY = "PORTER_BUNDLE_ENCRYPTION_KEY"
ENV_ENCRYPTION_KEY_FILE = "PORTER_BUNDLE_ENCRYPTION_KEY_FILE"
KEY_FILE_SUFFIX = ".key"
DATA_DIR_KEY_FILE = "porter-bundle.key"
# --- security (issue 7: authentication, authorization, TLS, audit) ---
ENV_TOKEN_FILE = "PORTER_BUNDLE_TOKEN_FILE"
ENV_TLS_CERT = "PORTER_BUNDLE_TLS_CERT"
ENV_TLS_KEY = "PORTER_BUNDLE_TLS_KEY"
ENV_TLS_CLIENT_CA = "PORTER_BUNDLE_TLS_CLIENT_CA"
ENV_INSECURE = "PORTER_BUNDLE_INSECURE"
ENV_REFLECTION_REQUIRES_AUTH = "PORTER_BUNDLE_REFLECTION_REQUIRES_AUTH"
ENV_AUDIT_LOG = "PORTER_BUNDLE_AUDIT_LOG"


def default_data_dir() -> Path:
    """``$PORTER_BUNDLE_DATA_DIR``, else ``$XDG_DATA_HOME/porter-bundle``, else ``~/.local/share/porter-bundle``."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "porter-bundle"


def env_flag(name: str) -> bool:
    """A boolean environment variable: true for 1, true, yes or on (any case)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to start."""

    address: str = DEFAULT_ADDRESS
    """host:port to listen on; port 0 picks a free port."""
    database: str = ""
    """SQLAlchemy URL of the database; "" means the SQLite file in the data directory."""
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    """How long in-flight calls may finish after SIGTERM."""
    workers: int = DEFAULT_WORKERS
    """Threads for blocking database work."""
    container_host: str | None = None
    """Docker Engine API endpoint (Docker or Podman), e.g. unix:///run/podman/podman.sock;
    None tries DOCKER_HOST and the usual sockets."""
    run_timeout_seconds: float = DEFAULT_RUN_TIMEOUT_SECONDS
    """A run still going after this long is stopped and fails."""
    max_concurrent_runs: int = DEFAULT_MAX_CONCURRENT_RUNS
    """Containers running at once; further runs wait PENDING."""
    cancel_grace_seconds: float = DEFAULT_CANCEL_GRACE_SECONDS
    """Between SIGTERM and SIGKILL when a run is canceled."""
    container_network: str | None = None
    """Network mode for invocation images; None = no network."""
    insecure_registries: frozenset[str] = frozenset()
    """Registry hosts (host[:port]) reached over plain HTTP."""
    registry_config: str = ""
    """A docker config.json whose ``auths`` give registry credentials; "" = none."""
    secrets_dir: str = ""
    """Directory of the built-in secret store (one file per secret); "" = <data dir>/secrets."""
    legacy_reveal_sensitive: bool = False
    """porter.v1alpha1.Porter hands out sensitive output values to every caller (as Porter
    does) instead of omitting them; only for a trusted in-cluster deployment."""
    stream_heartbeat_seconds: float = DEFAULT_STREAM_HEARTBEAT_SECONDS
    """A live stream (WatchInstallationRuns, StreamRunLogs) that sent nothing for this long
    sends a heartbeat, so proxies with idle timeouts keep it open."""
    stream_recheck_seconds: float = DEFAULT_STREAM_RECHECK_SECONDS
    """How often a live stream re-reads the store besides waiting for events, so a change
    made by another server process still arrives."""
    schema_check: str = DEFAULT_SCHEMA_CHECK
    """How strictly a Porter document's schemaVersion must match the supported versions:
    exact, minor, major or none (Porter's schema-check setting)."""
    encryption_key_file: str = ""
    """File of the keys that encrypt secrets in the database (base64, one a line, newest
    first); "" = :func:`default_key_file`, created on first start."""
    encryption_key: str = ""
    """The encryption keys themselves (base64, comma-separated, newest first), instead of a
    file (from $PORTER_BUNDLE_ENCRYPTION_KEY only)."""
    # --- security (issue 7) ---
    token_file: str = ""
    """The token file (principals, token hashes, role bindings); "" = no bearer tokens."""
    tls_cert: str = ""
    """PEM certificate of the server; with ``tls_key`` the server speaks TLS only."""
    tls_key: str = ""
    """PEM private key of ``tls_cert``."""
    tls_client_ca: str = ""
    """PEM CA of client certificates: mutual TLS, the certificate's CN is the principal."""
    insecure: bool = False
    """Allow a non-loopback address without authentication (a warning is logged)."""
    reflection_requires_auth: bool = False
    """Server reflection needs credentials too (health checks never do)."""
    audit_log: str = ""
    """File the audit records of reveals are appended to; "" = the log."""

    @property
    def authenticates(self) -> bool:
        """Whether callers are authenticated (a token file or mutual TLS)."""
        return bool(self.token_file or self.tls_client_ca)

    @property
    def secrets_path(self) -> Path:
        """The secret store's directory."""
        return Path(self.secrets_dir) if self.secrets_dir else default_data_dir() / "secrets"

    @property
    def database_url(self) -> str:
        """The database URL to use."""
        return self.database or sqlite_url(default_data_dir() / DATABASE_FILE)


def default_key_file(database_url: str) -> Path:
    """Where the encryption key file is by default: ``<database file>.key`` beside a SQLite
    database, else ``porter-bundle.key`` in the data directory."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database + KEY_FILE_SUFFIX)
    return default_data_dir() / DATA_DIR_KEY_FILE


def key_file_path(settings: Settings) -> Path:
    """The key file the settings name, or the default one."""
    if settings.encryption_key_file:
        return Path(settings.encryption_key_file)
    return default_key_file(settings.database_url)


def open_keyring(settings: Settings) -> Keyring:
    """The keys that encrypt secrets: from ``encryption_key``, else the key file named, else
    the default key file, which is created (mode 0600) when missing. A named key file must
    exist. ``KeyFileError`` (a ValueError) when they cannot be used; never logs a key."""
    from porter_bundle.store.crypto import (
        Keyring,
        create_key_file,
        parse_key,
        read_key_file,
    )

    if settings.encryption_key:
        keys = [
            parse_key(part, f"${ENV_ENCRYPTION_KEY}, key {n}")
            for n, part in enumerate(settings.encryption_key.split(","), 1)
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
