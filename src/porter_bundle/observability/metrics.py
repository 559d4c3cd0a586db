"""Prometheus metrics of one server, on a registry of its own (never the global one, so
several servers in one process — tests — keep apart), served over plain HTTP.

- gRPC, named as go-grpc-prometheus names them: ``grpc_server_started_total``,
  ``grpc_server_handled_total`` (with ``grpc_code``), ``grpc_server_handling_seconds``,
  ``grpc_server_msg_received_total``, ``grpc_server_msg_sent_total``, and
  ``grpc_server_in_flight`` (calls being served; open streams for the streaming methods),
  labelled ``grpc_type``, ``grpc_service``, ``grpc_method`` — only methods the server has.
- Runs (from the run events of :mod:`porter_bundle.service.observe`):
  ``porter_bundle_runs_accepted_total``, ``_started_total``, ``_finished_total`` (by
  ``action`` and ``result``), ``porter_bundle_run_duration_seconds``, the gauges
  ``porter_bundle_runs_pending`` (waiting for a slot) and ``porter_bundle_runs_active``
  (running), ``porter_bundle_run_cancellations_total``, ``porter_bundle_run_recoveries_total``
  (by ``outcome``).
- ``porter_bundle_auth_refusals_total`` (by ``reason``), ``porter_bundle_reveals_total`` (by
  ``method``), ``porter_bundle_health_status`` (by ``service``; 1 serving),
  ``porter_bundle_database_pool_connections`` (by ``state``: in_use, size).
- ``porter_bundle_executor_errors_total`` and ``porter_bundle_registry_errors_total`` (by
  ``kind``, one of ``service.observe.ERROR_KINDS``), counted where those failures become
  domain errors.

No label carries a run ID, a name chosen by a user or a secret: ``action`` is the CNAB action
kind (install, upgrade, uninstall, or invoke for every custom action).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from porter.bundle.v1.run_pb2 import ACTION_INVOKE
from porter_bundle.service.observe import Kind, RunEvent
from porter_bundle.service.runs import ACTION_NAMES

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
RUN_DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class Metrics:
    """Every metric of one server, on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.grpc_started = Counter(
            "grpc_server_started", "RPCs started on the server.", GRPC_LABELS, registry=r
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            (*GRPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.grpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency (seconds) of RPCs handled by the server.",
            GRPC_LABELS,
            registry=r,
        )
        self.grpc_received = Counter(
            "grpc_server_msg_received",
            "RPC messages received on the server.",
            GRPC_LABELS,
            registry=r,
        )
        self.grpc_sent = Counter(
            "grpc_server_msg_sent", "RPC messages sent by the server.", GRPC_LABELS, registry=r
        )
        self.grpc_in_flight = Gauge(
            "grpc_server_in_flight",
            "RPCs being handled (open streams for streaming methods).",
            GRPC_LABELS,
            registry=r,
        )
        self.runs_accepted = Counter(
            "porter_bundle_runs_accepted",
            "Runs recorded by ExecuteAction.",
            ("action",),
            registry=r,
        )
        self.runs_started = Counter(
            "porter_bundle_runs_started",
            "Runs whose container was started.",
            ("action",),
            registry=r,
        )
        self.runs_finished = Counter(
            "porter_bundle_runs_finished",
            "Runs ended, by result (succeeded, failed, canceled, timed_out).",
            ("action", "result"),
            registry=r,
        )
        self.run_seconds = Histogram(
            "porter_bundle_run_duration_seconds",
            "Time from a run's start to its end.",
            ("action", "result"),
            buckets=RUN_DURATION_BUCKETS,
            registry=r,
        )
        self.run_failures = Counter(
            "porter_bundle_run_failures",
            "Runs that failed, by cause (exit_code, missing_outputs, container_error, timeout, "
            "engine_unavailable, internal, recovery).",
            ("cause",),
            registry=r,
        )
        self.cancellations = Counter(
            "porter_bundle_run_cancellations", "CancelRun calls for active runs.", registry=r
        )
        self.recoveries = Counter(
            "porter_bundle_run_recoveries",
            "Runs and containers found after a restart, by outcome (reattached, failed, "
            "orphan_removed).",
            ("outcome",),
            registry=r,
        )
        self.auth_refusals = Counter(
            "porter_bundle_auth_refusals",
            "Calls refused by authentication or authorization, by reason.",
            ("reason",),
            registry=r,
        )
        self.reveals = Counter(
            "porter_bundle_reveals",
            "Audited reveals of sensitive values, by method.",
            ("method",),
            registry=r,
        )
        self.health = Gauge(
            "porter_bundle_health_status",
            "Health of each service as grpc.health.v1 reports it (1 serving, 0 not).",
            ("service",),
            registry=r,
        )
        self.database_pool = Gauge(
            "porter_bundle_database_pool_connections",
            "Pooled database connections: in_use (checked out) and size (of the pool).",
            ("state",),
            registry=r,
        )
        self.executor_errors = Counter(
            "porter_bundle_executor_errors",
            "Container engine failures, by kind (unavailable, refused, ...).",
            ("kind",),
            registry=r,
        )
        self.registry_errors = Counter(
            "porter_bundle_registry_errors",
            "Registry failures, by kind (unavailable, timeout, not_found, denied, ...).",
            ("kind",),
            registry=r,
        )
        self.runs = RunMetrics(self)
        pending = Gauge(
            "porter_bundle_runs_pending", "Runs waiting for a slot (PENDING).", registry=r
        )
        pending.set_function(lambda: self.runs.count("pending"))
        active = Gauge("porter_bundle_runs_active", "Runs running (RUNNING).", registry=r)
        active.set_function(lambda: self.runs.count("running"))

    def watch_pool(self, usage: Callable[[], tuple[int, int]]) -> None:
        """Reads the database pool's (in use, size) from ``usage`` at each scrape."""
        self.database_pool.labels("in_use").set_function(lambda: usage()[0])
        self.database_pool.labels("size").set_function(lambda: usage()[1])

    def boundary_error(self, boundary: str, kind: str) -> None:
        """The error observer: counts an executor or registry failure by kind."""
        counter = self.executor_errors if boundary == "executor" else self.registry_errors
        counter.labels(kind).inc()

    def auth_refused(self, reason: str) -> None:
        """Counts a refused call (``reason``: the error's reason, e.g. TOKEN_INVALID)."""
        self.auth_refusals.labels(reason or "UNSPECIFIED").inc()

    def revealed(self, method: str) -> None:
        """Counts an audited reveal by ``method`` (the short RPC name)."""
        self.reveals.labels(method.rsplit("/", 1)[-1]).inc()


def _action(event: RunEvent) -> str:
    run = event.run
    if run is None:
        return ""
    return "invoke" if run.action == ACTION_INVOKE else ACTION_NAMES.get(run.action, "unknown")


_ENDINGS = {Kind.FINISHED: "", Kind.CANCELED: "canceled", Kind.TIMED_OUT: "timed_out"}


class RunMetrics:
    """The run observer behind the run metrics; knows which runs of this process are active."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()

    def count(self, state: str) -> int:
        """Active runs in ``state`` (pending or running)."""
        with self._lock:
            return sum(1 for s in self._states.values() if s == state)

    def __call__(self, event: RunEvent) -> None:
        m, kind, action = self._m, event.kind, _action(event)
        with self._lock:
            if kind is Kind.ACCEPTED:
                self._states[event.run_id] = "pending"
            elif kind in (Kind.STARTED, Kind.RECOVERED):
                self._states[event.run_id] = "running"
            elif kind in (*_ENDINGS, Kind.RECOVERY_FAILED):
                self._states.pop(event.run_id, None)
        if kind is Kind.ACCEPTED:
            m.runs_accepted.labels(action).inc()
        elif kind is Kind.STARTED:
            m.runs_started.labels(action).inc()
        elif kind is Kind.CANCEL_REQUESTED:
            m.cancellations.inc()
        elif kind is Kind.RECOVERED:
            m.recoveries.labels("reattached").inc()
        elif kind is Kind.RECOVERY_FAILED:
            m.recoveries.labels("failed").inc()
            m.runs_finished.labels(action, "failed").inc()
        elif kind is Kind.ORPHAN_REMOVED:
            m.recoveries.labels("orphan_removed").inc()
        if event.cause:
            m.run_failures.labels(event.cause).inc()
        if kind in _ENDINGS:
            result = _ENDINGS[kind] or event.result
            m.runs_finished.labels(action, result).inc()
            duration = event.duration_seconds
            if duration is not None:
                m.run_seconds.labels(action, result).observe(duration)


# --- HTTP -----------------------------------------------------------------------------------


class MetricsServer:
    """``/metrics`` in the Prometheus text format over plain HTTP, on a thread of its own."""

    def __init__(self, metrics: Metrics, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._httpd, self._thread = start_http_server(
            int(port), host.strip("[]"), registry=metrics.registry
        )
        self.port: int = self._httpd.server_address[1]

    def close(self) -> None:
        """Stops serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


__all__ = ["Metrics", "MetricsServer", "RunMetrics"]
