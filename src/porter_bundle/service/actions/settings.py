"""The limits and choices of running actions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSettings:
    """Limits and choices for running actions."""

    run_timeout_seconds: float = 3600.0
    """A run still going after this long is stopped and FAILS."""
    max_concurrent_runs: int = 4
    """Containers running at once across all installations; further runs wait PENDING."""
    cancel_grace_seconds: float = 10.0
    """Between SIGTERM and SIGKILL when a run is canceled."""
    network: str | None = None
    """Network mode for invocation images; None = no network."""


__all__ = ["ActionSettings"]
