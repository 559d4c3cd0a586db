"""Shared fixtures: a real server on port 0 over a real SQLite file, and real stubs."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.api.server import RunningServer, start_server
from porter_bundle.config import Settings, sqlite_url
from porter_bundle.service import Services
from porter_bundle.store import Store


@dataclass
class ServerHandle:
    """A server running in its own event loop thread."""

    port: int
    store: Store
    services: Services
    loop: asyncio.AbstractEventLoop
    running: RunningServer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float | None = 0) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(grace), self.loop).result(timeout=30)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "porter-bundle.db"


# Set to a PostgreSQL server URL (e.g. postgresql+psycopg://postgres@/postgres?host=/var/run/postgresql)
# to run every store-backed test against a fresh PostgreSQL database instead of a SQLite file.
POSTGRES_ENV = "PORTER_BUNDLE_TEST_POSTGRES"


@pytest.fixture
def database_url(db_path: Path) -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        yield sqlite_url(db_path)
        return
    name = f"pbtest_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def services(store: Store) -> Services:
    return Services.create(store)


@pytest.fixture
def server(store: Store, services: Services) -> Iterator[ServerHandle]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server-loop", daemon=True)
    thread.start()
    started: Future[RunningServer] = asyncio.run_coroutine_threadsafe(
        start_server(Settings(address="127.0.0.1:0"), services), loop
    )
    running = started.result(timeout=30)
    handle = ServerHandle(running.port, store, services, loop, running)
    yield handle
    try:
        handle.stop(0)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def channel(server: ServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> porter_bundle_pb2_grpc.PorterBundleStub:
    return porter_bundle_pb2_grpc.PorterBundleStub(channel)
