"""The limits and choices of running actions, as the server's settings give them."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from porter_bundle.config import Settings


@dataclass(frozen=True)
class ActionSettings:
    """Limits and choices for running actions (no defaults here: config declares them)."""

    run_timeout_seconds: float
    """A run still going after this long is stopped and FAILS."""
    max_concurrent_runs: int
    """Containers running at once across all installations; further runs wait PENDING."""
    cancel_grace_seconds: float
    """Between SIGTERM and SIGKILL when a run is canceled."""
    network: str | None
    """Network mode for invocation images; None = no network."""
    engine_retry_seconds: float
    """How long a run tries to reach an engine that stopped answering before it FAILS (its
    timeout bounds it too)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ActionSettings:
        """The action settings of the server's ``settings``."""
        return cls(
            run_timeout_seconds=settings.run_timeout_seconds,
            max_concurrent_runs=settings.max_concurrent_runs,
            cancel_grace_seconds=settings.cancel_grace_seconds,
            network=settings.container_network,
            engine_retry_seconds=settings.engine_retry_seconds,
        )


@dataclass(frozen=True)
class LeaseSettings:
    """This replica's name and the leases of the runs it executes (see service.actions.leases;
    no defaults here either)."""

    replica_id: str
    """The owner of the runs this server executes."""
    run_lease_seconds: float
    """How long a hold on a run lasts unless renewed."""
    lease_renew_seconds: float
    """How often leases are renewed and expired ones looked for."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LeaseSettings:
        """The lease settings of the server's ``settings`` (a new replica id when unset)."""
        return cls(
            replica_id=settings.replica_id or default_replica_id(),
            run_lease_seconds=settings.run_lease_seconds,
            lease_renew_seconds=settings.lease_renew_seconds,
        )


def default_replica_id() -> str:
    """HOSTNAME-PID-RANDOM: unique among the replicas of one database, new at each start."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


__all__ = ["ActionSettings", "LeaseSettings", "default_replica_id"]
