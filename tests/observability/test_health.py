"""grpc.health.v1 that tells the truth: a real server over a real Podman engine reached
through a socket proxy that the test stops (the engine is gone) and starts again."""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from porter_bundle.api.servicers import LEGACY_SERVICE, SERVICE
from porter_bundle.config import Settings
from porter_bundle.executor import ContainerExecutor
from porter_bundle.observability.health import LIVENESS
from porter_bundle.service import Services
from tests.helpers import wait_until
from tests.observability.test_metrics import scrape
from tests.socket_proxy import UnixSocketProxy

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def engine_proxy(podman_service) -> Iterator[UnixSocketProxy]:
    with tempfile.TemporaryDirectory(prefix="pb-proxy-") as root:  # short: a socket path
        proxy = UnixSocketProxy(Path(root) / "engine.sock", Path(podman_service.url[7:]))
        proxy.start()
        try:
            yield proxy
        finally:
            proxy.stop()


@pytest.fixture
def server_settings() -> Settings:
    return Settings(address="127.0.0.1:0", health_probe_seconds=0.2, metrics_address="127.0.0.1:0")


@pytest.fixture
def services(store, engine_proxy) -> Services:
    return Services.create(store, executor=lambda: ContainerExecutor(engine_proxy.url))


def statuses(channel) -> dict[str, int]:
    health = health_pb2_grpc.HealthStub(channel)
    return {
        name: health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
        for name in ("", SERVICE, LEGACY_SERVICE, LIVENESS)
    }


def health_gauge(server) -> dict[str, float]:
    samples = scrape(server.running.observability.metrics_port)
    return {
        dict(labels)["service"]: v
        for (name, labels), v in samples.items()
        if name == "porter_bundle_health_status"
    }


def test_the_engine_going_away_and_coming_back(server, channel, engine_proxy, caplog):
    assert statuses(channel) == dict.fromkeys(("", SERVICE, LEGACY_SERVICE, LIVENESS), SERVING)
    seen: list[int] = []
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE)
    )

    def follow() -> None:
        with contextlib.suppress(grpc.RpcError):  # canceled at the end
            for response in watch:
                seen.append(response.status)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    wait_until(lambda: seen == [SERVING], "the Watch to send the current status")

    engine_proxy.stop()
    wait_until(lambda: statuses(channel)[SERVICE] == NOT_SERVING, "PorterBundle to stop serving")
    # Reads do not need the engine: the server overall, the legacy API and liveness still serve.
    assert statuses(channel) == {
        "": SERVING,
        SERVICE: NOT_SERVING,
        LEGACY_SERVICE: SERVING,
        LIVENESS: SERVING,
    }
    assert health_gauge(server) == {"": 1, SERVICE: 0, LEGACY_SERVICE: 1, LIVENESS: 1}
    assert any(
        "NOT_SERVING" in r.getMessage() and "container engine" in r.getMessage()
        for r in caplog.records
    )

    engine_proxy.start()
    wait_until(lambda: statuses(channel)[SERVICE] == SERVING, "PorterBundle to serve again")
    wait_until(lambda: seen == [SERVING, NOT_SERVING, SERVING], "the Watch to see both changes")
    assert health_gauge(server) == {"": 1, SERVICE: 1, LEGACY_SERVICE: 1, LIVENESS: 1}
    watch.cancel()
    follower.join(timeout=10)
