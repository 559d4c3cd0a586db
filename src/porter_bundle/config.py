"""Server settings: one typed object built from flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ADDRESS = "127.0.0.1:3001"
DEFAULT_GRACE_SECONDS = 10.0
DEFAULT_WORKERS = 8
DATABASE_FILE = "porter-bundle.db"
ENV_ADDRESS = "PORTER_BUNDLE_ADDRESS"
ENV_DATABASE = "PORTER_BUNDLE_DATABASE"
ENV_DATA_DIR = "PORTER_BUNDLE_DATA_DIR"
ENV_CONTAINER_HOST = "PORTER_BUNDLE_CONTAINER_HOST"
DEFAULT_RUN_TIMEOUT_SECONDS = 3600.0
DEFAULT_MAX_CONCURRENT_RUNS = 4
DEFAULT_CANCEL_GRACE_SECONDS = 10.0


def default_data_dir() -> Path:
    """``$PORTER_BUNDLE_DATA_DIR``, else ``$XDG_DATA_HOME/porter-bundle``, else ``~/.local/share/porter-bundle``."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "porter-bundle"


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
    secrets_dir: str = ""
    """Directory of the built-in secret store (one file per secret); "" = <data dir>/secrets."""

    @property
    def secrets_path(self) -> Path:
        """The secret store's directory."""
        return Path(self.secrets_dir) if self.secrets_dir else default_data_dir() / "secrets"

    @property
    def database_url(self) -> str:
        """The database URL to use."""
        return self.database or sqlite_url(default_data_dir() / DATABASE_FILE)
