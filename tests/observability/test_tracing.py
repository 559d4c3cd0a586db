"""OpenTelemetry traces of a real server (the otel extra), collected by an in-memory exporter:
the RPC span joins the caller's trace, the run's span is its child, and the run's container
gets the trace context as TRACEPARENT."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.api.server import start_server
from porter_bundle.config import Settings
from porter_bundle.executor import ContainerResult
from porter_bundle.observability.tracing import Tracing, wanted
from tests.fake_executor import FakeExecutor, services_with
from tests.helpers import ended_run, wait_until
from tests.service.action_bundle import NS, create_plain_app

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def fake() -> FakeExecutor:
    fake = FakeExecutor()
    fake.behaviour = lambda spec: ContainerResult(exit_code=0)
    return fake


@pytest.fixture
def traced(store, fake, exporter) -> Iterator[porter_bundle_pb2_grpc.PorterBundleStub]:
    """A server with traces on, in its own loop thread, and a stub."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    services = services_with(store, fake, max_concurrent_runs=1)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(
        start_server(
            Settings(address="127.0.0.1:0"),
            services,
            services.blocking.pool,
            tracer_provider=provider,
        ),
        loop,
    ).result(30)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield porter_bundle_pb2_grpc.PorterBundleStub(channel)
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def test_an_action_is_one_trace_from_the_caller_into_the_container(traced, fake, exporter):
    stub = traced
    create_plain_app(stub)
    run = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name="app", action="install"),
        metadata=(("traceparent", TRACEPARENT),),
    ).run
    ended_run(stub, NS, "app", run.id)

    def run_span():
        return next((s for s in exporter.get_finished_spans() if s.name == "run install"), None)

    span = wait_until(run_span, "the run's span to end")
    calls = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("/")}
    execute = calls["/porter.bundle.v1.PorterBundle/ExecuteAction"]
    # The call joined the caller's trace; the run is its child, in the same trace.
    assert f"{execute.context.trace_id:032x}" == TRACE_ID
    assert f"{execute.parent.span_id:016x}" == CALLER_SPAN
    assert span.context.trace_id == execute.context.trace_id
    assert span.parent.span_id == execute.context.span_id
    assert span.attributes["porter_bundle.run_id"] == run.id
    assert span.attributes["porter_bundle.result"] == "succeeded"
    assert [e.name for e in span.events] == ["started"]
    # The container can join the trace too.
    env = fake.specs[-1].env
    version, trace_id, parent, _flags = env["TRACEPARENT"].split("-")
    assert (version, trace_id) == ("00", TRACE_ID)
    assert parent == f"{execute.context.span_id:016x}"


def test_traces_are_off_by_default(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not wanted("")
    assert wanted("http://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert wanted("")


def test_a_provider_made_here_exports_over_otlp():
    tracing = Tracing("http://127.0.0.1:1")  # nothing listens: nothing is sent before a span ends
    try:
        assert tracing.provider.resource.attributes["service.name"] == "porter-bundle"
    finally:
        tracing.close()
