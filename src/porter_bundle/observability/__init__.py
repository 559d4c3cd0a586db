"""Operating the server: its structured log (:mod:`.logs`), Prometheus metrics
(:mod:`.metrics`, with the call wrapper in :mod:`.calls`) and dependency-aware health
(:mod:`.health`).

The service layer only emits run events (:mod:`porter_bundle.service.observe`) and the auth
layer only calls back on a refusal or a reveal; this package observes them, and the server
factory (:mod:`porter_bundle.api.server`) wires it in with :class:`Observability`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from porter_bundle.api.interception import HandlerWrapper
from porter_bundle.config import Settings
from porter_bundle.observability.calls import CallObserver
from porter_bundle.observability.logs import AccessLog, RunLifecycleLog
from porter_bundle.observability.metrics import Metrics, MetricsServer
from porter_bundle.observability.tracing import Tracing, wanted
from porter_bundle.service import Services
from porter_bundle.service.observe import RunObserver


class Observability:
    """What one server observes with: attached to its services until :meth:`close`.

    Metrics exist only with ``--metrics-address`` (else no registry, no call wrapper unless
    the access log is on)."""

    def __init__(
        self, settings: Settings, services: Services, *, tracer_provider: Any = None
    ) -> None:
        self._services = services
        self._address = settings.metrics_address
        self.metrics = Metrics() if settings.metrics_address else None
        """The server's metrics (None: off)."""
        self.metrics_port: int | None = None
        """The port /metrics is served on once started."""
        self._http: MetricsServer | None = None
        self._access = AccessLog(authenticates=settings.authenticates)
        self._observers: list[RunObserver] = [RunLifecycleLog()]
        if self.metrics is not None:
            self._observers.append(self.metrics.runs)
            self._on_error = self.metrics.boundary_error  # one bound method: removed by identity
            services.actions.observers.add_errors(self._on_error)
            if services.store is not None:
                self.metrics.watch_pool(services.store.pool_usage)
        self.tracing: Tracing | None = None
        """OpenTelemetry traces (None: off); ``tracer_provider`` turns them on (tests)."""
        if tracer_provider is not None or wanted(settings.otlp_endpoint):
            self.tracing = Tracing(settings.otlp_endpoint, tracer_provider)
            self._observers.append(self.tracing)
            services.actions.container_env = self.tracing.container_env
            services.actions.phase_hooks = self.tracing.phases
        for observer in self._observers:
            services.actions.observers.add(observer)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The tracing interceptor when traces are on (it sees each call first)."""
        return [self.tracing.interceptor()] if self.tracing is not None else []

    def wrappers(self) -> list[HandlerWrapper]:
        """The call wrapper (outside authentication, so refused calls count) when there are
        metrics or an access log."""
        if self.metrics is None and not self._access.enabled:
            return []
        return [CallObserver(self.metrics, self._access)]

    @property
    def on_refused(self) -> Callable[[str], None] | None:
        """What the authentication guard tells the reason of a refusal."""
        return self.metrics.auth_refused if self.metrics is not None else None

    @property
    def on_reveal(self) -> Callable[[str], None] | None:
        """What the audit log tells the method of a reveal."""
        return self.metrics.revealed if self.metrics is not None else None

    def start(self) -> None:
        """Starts serving /metrics (when on)."""
        if self.metrics is not None and self._http is None:
            self._http = MetricsServer(self.metrics, self._address)
            self.metrics_port = self._http.port

    def close(self) -> None:
        """Stops serving /metrics and observing the services."""
        if self._http is not None:
            self._http.close()
            self._http = None
        for observer in self._observers:
            self._services.actions.observers.remove(observer)
        if self.metrics is not None:
            self._services.actions.observers.remove_errors(self._on_error)
        if self.tracing is not None:
            self._services.actions.container_env = None
            self._services.actions.phase_hooks = None
            self.tracing.close()


__all__ = ["Metrics", "Observability"]
