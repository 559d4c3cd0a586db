"""The one threading policy: blocking calls run on the pool the composition root hands over,
never on the event loop's default executor."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter_bundle.service import Blocking, Services
from tests.conftest import ServerHandle
from tests.fake_executor import FakeExecutor

NS, REF = "dev", "localhost:5000/app:v1.0.0"
BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "app",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/app-installer:v1"}],
}


class CountingPool(ThreadPoolExecutor):
    """A pool that counts what is submitted to it; with ``refuse`` it refuses every call."""

    def __init__(self, *, refuse: bool = False) -> None:
        super().__init__(max_workers=2, thread_name_prefix="test-pool")
        self.refuse = refuse
        self.calls = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.calls += 1
        if self.refuse:
            raise AssertionError("a blocking call went to the event loop's default executor")
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def pool() -> Iterator[CountingPool]:
    pool = CountingPool()
    yield pool
    pool.shutdown()


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def services(store, fake, pool) -> Services:
    return Services.create(store, executor=lambda: fake, blocking=Blocking(pool))


def test_run_uses_the_pool_in_the_callers_context(pool: CountingPool) -> None:
    who: contextvars.ContextVar[str] = contextvars.ContextVar("who")

    def where() -> tuple[str, str]:
        return who.get(), threading.current_thread().name

    async def go() -> tuple[str, str]:
        who.set("caller")
        return await Blocking(pool).run(where)

    seen, thread = asyncio.run(go())
    assert seen == "caller" and thread.startswith("test-pool")
    assert pool.calls == 1


def test_an_action_and_an_apply_never_use_the_default_executor(
    stub, server: ServerHandle, services: Services, pool: CountingPool, fake: FakeExecutor
) -> None:
    refusing = CountingPool(refuse=True)

    async def refuse_default() -> None:
        asyncio.get_running_loop().set_default_executor(refusing)

    def on_loop(work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, server.loop).result(30)

    on_loop(refuse_default())
    stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(BUNDLE)))
    bundle = BundleReference(repository="localhost:5000/app", version="1.0.0")
    stub.CreateInstallation(
        pb.CreateInstallationRequest(
            installation=Installation(namespace=NS, name="app", bundle=bundle)
        )
    )
    executed = stub.ExecuteAction(
        pb.ExecuteActionRequest(namespace=NS, name="app", action="install")
    ).run
    on_loop(services.actions.wait_idle())
    document = {
        "schemaType": "Installation",
        "schemaVersion": "1.0.2",
        "namespace": NS,
        "name": "web",
        "bundle": {"repository": "localhost:5000/app", "version": "1.0.0"},
    }
    applied = stub.ApplyInstallation(
        pb.ApplyInstallationRequest(document=json.dumps(document).encode())
    ).run
    on_loop(services.actions.wait_idle())

    for name, run in (("app", executed), ("web", applied)):
        ended = stub.GetInstallationRun(
            pb.GetInstallationRunRequest(namespace=NS, name=name, run_id=run.id)
        ).run
        assert ended.state == RUN_STATE_SUCCEEDED, ended.message
    assert len(fake.specs) == 2
    assert refusing.calls == 0
    assert pool.calls > 0  # the handlers' and the services' blocking calls
    refusing.shutdown()
