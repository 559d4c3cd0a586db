"""Operating the server: its structured log (:mod:`.logs`), Prometheus metrics
(:mod:`.metrics`) and dependency-aware health (:mod:`.health`).

The service layer only emits run events (:mod:`porter_bundle.service.observe`); this package
observes them, and the server factory (:mod:`porter_bundle.api.server`) wires it in with
:class:`Observability`.
"""

from __future__ import annotations

from porter_bundle.config import Settings
from porter_bundle.observability.logs import RunLifecycleLog
from porter_bundle.service import Services


class Observability:
    """What one server observes with: attached to its services, detached by :meth:`close`."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self._services = services
        self._lifecycle = RunLifecycleLog()
        services.actions.observers.add(self._lifecycle)

    def close(self) -> None:
        """Stops observing the services."""
        self._services.actions.observers.remove(self._lifecycle)


__all__ = ["Observability"]
