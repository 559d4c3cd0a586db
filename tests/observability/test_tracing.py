"""OpenTelemetry traces of a real server (the otel extra), collected by an in-memory exporter:
the RPC span joins the caller's trace, the run's span is its child, and the run's container
gets the run's trace context as TRACEPARENT. tests/observability/test_tracing_engine.py has the
container steps on a real engine and a real OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.config import Settings
from porter_bundle.executor import ContainerResult
from porter_bundle.observability.tracing import Tracing, wanted
from tests.fake_executor import FakeExecutor, services_with
from tests.helpers import ended_run, server_in_thread, wait_until
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


def in_memory_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def traced(store, fake, exporter) -> Iterator[porter_bundle_pb2_grpc.PorterBundleStub]:
    """A server with traces on, in its own loop thread, and a stub."""
    services = services_with(store, fake, max_concurrent_runs=1)
    settings = Settings(address="127.0.0.1:0")
    provider = in_memory_provider(exporter)
    with (
        server_in_thread(settings, services, tracer_provider=provider) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield porter_bundle_pb2_grpc.PorterBundleStub(channel)


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
    # The container can join the trace too, as a child of its run.
    env = fake.specs[-1].env
    version, trace_id, parent, _flags = env["TRACEPARENT"].split("-")
    assert (version, trace_id) == ("00", TRACE_ID)
    assert parent == f"{span.context.span_id:016x}"
    # The fake executor reports no steps: the run has no child spans.
    assert not [s for s in exporter.get_finished_spans() if s.parent == span.context]


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


WITHOUT_OTEL = """
import importlib.abc, sys

class NoOtel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoOtel())
from porter_bundle.executor import phase, reporting_phases
from porter_bundle.service.actions.runner import Runner  # the run path imports no tracing
with reporting_phases(None):
    phase("image pull")
from porter_bundle.cli import main
sys.argv = ["porter-bundle", "serve", "--address", "127.0.0.1:0", "--otlp-endpoint", "http://c:4317"]
sys.exit(main())
"""


def test_without_the_extra_runs_work_and_an_endpoint_is_refused(tmp_path):
    import subprocess
    import sys

    env = {"PORTER_BUNDLE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OTEL], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "otel extra" in done.stderr and "Traceback" not in done.stderr
