"""The database going away: every service stops serving (liveness aside), then serves again.

A real PostgreSQL reached through a Unix socket proxy the test stops and starts; runs only
against PostgreSQL (``make test-postgres``), since a SQLite file cannot go away."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from porter_bundle.api.servicers import LEGACY_SERVICE, SERVICE
from porter_bundle.config import Settings
from porter_bundle.observability.health import LIVENESS
from porter_bundle.service import Services
from porter_bundle.store import Database, Keyring
from tests.conftest import POSTGRES_ENV
from tests.fake_executor import FakeExecutor, services_with
from tests.helpers import wait_until
from tests.socket_proxy import UnixSocketProxy

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = ("", SERVICE, LEGACY_SERVICE, LIVENESS)


@pytest.fixture
def db_proxy(database_url: str) -> Iterator[tuple[UnixSocketProxy, str]]:
    """A proxy in front of the test database's socket, and the URL that goes through it."""
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"needs PostgreSQL ({POSTGRES_ENV}, as `make test-postgres` sets it)")
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    if not isinstance(socket_dir, str):
        pytest.skip("the test database is not reached over a Unix socket")
    port = url.port or 5432
    with tempfile.TemporaryDirectory(prefix="pb-pg-") as root:
        proxy = UnixSocketProxy(
            Path(root) / f".s.PGSQL.{port}", Path(socket_dir) / f".s.PGSQL.{port}"
        )
        proxy.start()
        try:
            through = url.update_query_dict({"host": root})
            yield proxy, through.render_as_string(hide_password=False)
        finally:
            proxy.stop()


@pytest.fixture
def store(db_proxy: tuple[UnixSocketProxy, str]) -> Iterator[Database]:
    db = Database(db_proxy[1], keyring=Keyring.generate())
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def services(store: Database) -> Services:
    return services_with(store, FakeExecutor())


@pytest.fixture
def server_settings() -> Settings:
    return Settings(address="127.0.0.1:0", health_probe_seconds=0.2)


def statuses(channel) -> dict[str, int]:
    health = health_pb2_grpc.HealthStub(channel)
    return {
        name: health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
        for name in NAMES
    }


def test_the_database_going_away_and_coming_back(channel, db_proxy):
    proxy, _ = db_proxy
    assert statuses(channel) == dict.fromkeys(NAMES, SERVING)
    proxy.stop()
    wait_until(lambda: statuses(channel)[""] == NOT_SERVING, "the server to stop serving")
    assert statuses(channel) == {
        "": NOT_SERVING,
        SERVICE: NOT_SERVING,
        LEGACY_SERVICE: NOT_SERVING,
        LIVENESS: SERVING,
    }
    proxy.start()
    wait_until(
        lambda: statuses(channel) == dict.fromkeys(NAMES, SERVING), "every service to serve again"
    )
