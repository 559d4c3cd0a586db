"""OpenTelemetry traces: the optional extra ``otel`` (``pip install 'porter-bundle[otel]'``),
off unless ``--otlp-endpoint`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set.

- A span per RPC: the OpenTelemetry gRPC instrumentation's server interceptor, which joins
  the caller's trace (``traceparent`` metadata).
- A span per run (``run <action>``), a child of the ExecuteAction call's span, from
  ``accepted`` to its end, with its ``started`` / ``cancel requested`` events and its result;
  a run recovered after a restart gets a new span (``run <action> (recovered)``).
- Child spans of the run's span for the steps of its container, as the executor reports them
  (:func:`porter_bundle.executor.phase`): ``image pull``, ``container create``, ``copy
  files``, ``container start``, ``container wait``, ``collect outputs`` (``container remove``
  when it goes within the run; one that ran is removed after its end is stored).
- The run span's trace context goes into the run's container as ``TRACEPARENT`` (W3C), so a
  bundle can join the trace as a child of its run.

Spans are exported over OTLP/gRPC in batches; nothing here is imported without the extra.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager
from typing import Any

import grpc

from porter_bundle.executor import PhaseHook
from porter_bundle.service.observe import Kind, RunEvent
from porter_bundle.service.runs import action_name

ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
MISSING = "tracing needs the otel extra: pip install 'porter-bundle[otel]'"


def wanted(endpoint: str) -> bool:
    """Whether traces are on: an endpoint set, or the standard OTLP environment."""
    return bool(endpoint or any(os.environ.get(name) for name in ENDPOINT_ENV))


class Tracing:
    """The tracer provider of one server, its RPC interceptor, run spans and container env.

    ``provider`` (tests: one with an in-memory exporter) replaces the OTLP exporter."""

    def __init__(self, endpoint: str = "", provider: Any = None) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise ValueError(MISSING) from None
        if provider is None:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                raise ValueError(MISSING) from None
            provider = TracerProvider(resource=Resource.create({"service.name": "porter-bundle"}))
            exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
            provider.add_span_processor(BatchSpanProcessor(exporter))
            self._owned = True
        else:
            self._owned = False
        self.provider = provider
        self._tracer = provider.get_tracer("porter_bundle")
        self._trace = trace
        self._spans: dict[str, Any] = {}
        self._lock = threading.Lock()

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        """The OpenTelemetry gRPC instrumentation's server interceptor (a span per call)."""
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        made: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider
        )
        return made

    def _open(self, run_id: str) -> Any:
        """The span of a run of this process, started now (a child of the current span) if
        it has none yet."""
        with self._lock:
            span = self._spans.get(run_id)
            if span is None:
                span = self._spans[run_id] = self._tracer.start_span("run")
        return span

    def container_env(self, run_id: str) -> dict[str, str]:
        """``TRACEPARENT`` (and ``TRACESTATE``) of a new run's span, for its container: the
        span starts here, in the ExecuteAction call's context, before the run is accepted."""
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier, context=self._trace.set_span_in_context(self._open(run_id)))
        return {key.upper(): value for key, value in carrier.items()}

    def phases(self, run_id: str) -> PhaseHook | None:
        """What spans the steps of a run's container: a child span of the run's span each."""
        with self._lock:
            span = self._spans.get(run_id)
        if span is None:
            return None
        parent = self._trace.set_span_in_context(span)

        def step(name: str) -> AbstractContextManager[object]:
            made: AbstractContextManager[object] = self._tracer.start_as_current_span(
                name, context=parent
            )
            return made

        return step

    def __call__(self, event: RunEvent) -> None:
        """The run observer: opens, annotates and ends run spans."""
        run = event.run
        if run is None:
            return
        kind = event.kind
        if kind in (Kind.ACCEPTED, Kind.RECOVERED):
            name = f"run {action_name(run)}" + (" (recovered)" if kind is Kind.RECOVERED else "")
            span = self._open(run.id)  # opened by container_env already, for a new run
            span.update_name(name)
            span.set_attributes(
                {
                    "porter_bundle.run_id": run.id,
                    "porter_bundle.namespace": run.namespace,
                    "porter_bundle.installation": run.installation,
                    "porter_bundle.action": action_name(run),
                }
            )
            return
        with self._lock:
            span = self._spans.get(run.id)
        if span is None:
            return
        if kind in (Kind.STARTED, Kind.CANCEL_REQUESTED):
            span.add_event(kind.value)
            return
        if kind in (Kind.FINISHED, Kind.CANCELED, Kind.TIMED_OUT, Kind.RECOVERY_FAILED):
            with self._lock:
                self._spans.pop(run.id, None)
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("porter_bundle.result", event.result)
            if kind is Kind.TIMED_OUT:
                span.set_attribute("porter_bundle.timed_out", True)
            if event.result == "failed":
                span.set_status(Status(StatusCode.ERROR, event.message or "failed"))
            span.end()

    def close(self) -> None:
        """Ends the spans of runs still going and flushes (the provider made here)."""
        with self._lock:
            spans, self._spans = list(self._spans.values()), {}
        for span in spans:
            span.end()
        if self._owned:
            self.provider.shutdown()


__all__ = ["ENDPOINT_ENV", "Tracing", "wanted"]
