"""Shared fixtures: a real server on port 0 over a real SQLite file, and real stubs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

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


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(sqlite_url(db_path))
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
