"""Traces of runs on a real engine (Podman): the run's span has one child span per step of its
container, in order, and the container gets the run's span as TRACEPARENT (it prints it).
Collected by an in-memory exporter, and by a real OTLP/gRPC receiver that a real server
process exports to over the wire (opentelemetry-proto's TraceService on a real port)."""

from __future__ import annotations

import itertools
import json
import re
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter_bundle.config import Settings
from porter_bundle.executor.base import (
    PHASE_COPY_FILES,
    PHASE_CREATE,
    PHASE_OUTPUTS,
    PHASE_PULL,
    PHASE_START,
    PHASE_WAIT,
)
from tests.helpers import ended_run, engine_services, serve_process, server_in_thread, wait_until

pytestmark = pytest.mark.slow  # real containers

NS, NAME, REF = "dev", "traced", "localhost:5000/traced:v1.0.0"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
STEPS = [
    PHASE_PULL,
    PHASE_CREATE,
    PHASE_COPY_FILES,
    PHASE_START,
    PHASE_WAIT,
    PHASE_OUTPUTS,
]  # the container of a run that ran is removed once its end is stored, after the run's span

RUN_SCRIPT = r"""#!/bin/sh
echo "traceparent=$TRACEPARENT"
mkdir -p /cnab/app/outputs
printf 'hello' > /cnab/app/outputs/greeting
"""


def bundle(image: str) -> dict[str, Any]:
    return {
        "schemaVersion": "v1.0.0",
        "name": NAME,
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {"str": {"type": "string"}},
        "outputs": {"greeting": {"definition": "str", "path": "/cnab/app/outputs/greeting"}},
    }


def install(channel: grpc.Channel, image: str) -> tuple[str, str]:
    """Registers the bundle, installs it with the caller's trace context and waits for the
    end: (the run ID, the TRACEPARENT its container printed)."""
    stub = porter_bundle_pb2_grpc.PorterBundleStub(channel)
    stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(bundle(image))))
    stub.CreateInstallation(
        pb.CreateInstallationRequest(
            installation=Installation(
                namespace=NS,
                name=NAME,
                bundle=BundleReference(repository="localhost:5000/traced", tag="v1.0.0"),
            )
        )
    )
    run = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install"),
        metadata=(("traceparent", CALLER),),
    ).run
    ended = ended_run(stub, NS, NAME, run.id, timeout=60)
    assert ended.state == RUN_STATE_SUCCEEDED, ended.message
    logs = stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name=NAME, run_id=run.id)
    ).logs
    printed = re.search(r"traceparent=(\S*)", logs)
    assert printed, logs
    return run.id, printed.group(1)


def test_the_steps_of_a_run_on_podman_are_child_spans_of_its_run(store, podman_host, test_image):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    services = engine_services(store, podman_host, max_concurrent_runs=1)
    image = test_image("traced", RUN_SCRIPT)
    with (
        server_in_thread(Settings(address="127.0.0.1:0"), services, tracer_provider=provider) as s,
        grpc.insecure_channel(f"127.0.0.1:{s.port}") as channel,
    ):
        run_id, traceparent = install(channel, image)

        def run_span() -> Any:
            spans = exporter.get_finished_spans()
            return next((x for x in spans if x.name == "run install"), None)

        run = wait_until(run_span, "the run's span to end")
    spans = exporter.get_finished_spans()
    execute = next(x for x in spans if x.name == "/porter.bundle.v1.PorterBundle/ExecuteAction")
    assert run.attributes["porter_bundle.run_id"] == run_id
    assert run.parent.span_id == execute.context.span_id
    children = sorted(
        (x for x in spans if x.parent is not None and x.parent.span_id == run.context.span_id),
        key=lambda x: x.start_time,
    )
    assert [c.name for c in children] == STEPS
    for child in children:
        assert f"{child.context.trace_id:032x}" == TRACE_ID
        assert child.status.is_ok, child.status
    # One after the other, all within the run's span; and no step has steps of its own.
    assert run.start_time <= children[0].start_time
    assert all(a.end_time <= b.start_time for a, b in itertools.pairwise(children))
    assert children[-1].end_time <= run.end_time
    ids = {c.context.span_id for c in children}
    assert not [x for x in spans if x.parent is not None and x.parent.span_id in ids]
    # The container joined the trace as a child of its run.
    assert traceparent == f"00-{TRACE_ID}-{run.context.span_id:016x}-01"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend((resource.resource, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    found = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield found, port
    finally:
        server.stop(0)


def test_a_server_process_exports_the_run_tree_over_otlp(
    tmp_path: Path, podman_host, test_image, receiver
):
    found, port = receiver
    image = test_image("traced", RUN_SCRIPT)
    with (tmp_path / "server.log").open("w") as log:
        proc, server_port = serve_process(
            tmp_path / "db.sqlite",
            podman_host,
            "--otlp-endpoint",
            f"http://127.0.0.1:{port}",
            stderr=log,
        )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server_port}") as channel:
            run_id, traceparent = install(channel, image)
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop flushes the batch of spans
        proc.communicate(timeout=60)
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()[-2000:]

    def received() -> Any:
        with found.lock:
            spans = list(found.spans)
        names = {span.name for _, span in spans}
        return spans if "run install" in names and set(STEPS) <= names else None

    spans = wait_until(received, "the spans to arrive at the receiver")
    resource, run = next((r, s) for r, s in spans if s.name == "run install")
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == (
        "porter-bundle"
    )
    assert {a.key: a.value.string_value for a in run.attributes}["porter_bundle.run_id"] == run_id
    assert run.trace_id.hex() == TRACE_ID
    children = sorted(
        (s for _, s in spans if s.parent_span_id == run.span_id),
        key=lambda s: s.start_time_unix_nano,
    )
    assert [c.name for c in children] == STEPS
    assert all(c.trace_id == run.trace_id for c in children)
    assert traceparent == f"00-{TRACE_ID}-{run.span_id.hex()}-01"
