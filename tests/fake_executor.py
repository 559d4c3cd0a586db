"""A scripted stand-in at the executor boundary, for tests of the logic above it only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from porter_bundle.executor import ContainerResult, ContainerSpec, ExecutorUnavailable, LogSink
from porter_bundle.service import ActionSettings, Services
from porter_bundle.store import Database
from tests.helpers import wait_until, wait_until_async


class FakeExecutor:
    """Records every spec and answers with ``behaviour(spec)``; ``hold`` keeps runs going until released."""

    def __init__(self) -> None:
        self.specs: list[ContainerSpec] = []
        self.behaviour: Callable[[ContainerSpec], ContainerResult] = lambda spec: ContainerResult(
            exit_code=0
        )
        self.hold = threading.Event()
        self.started = threading.Event()
        self.canceled: set[str] = set()
        self.recoverable: dict[str, ContainerResult] = {}
        self.orphan_ids: list[str] = []
        self.recovered: list[str] = []
        self.removed: list[str] = []

    async def execute(
        self, spec: ContainerSpec, on_log: LogSink | None = None, *, keep: bool = False
    ) -> ContainerResult:
        self.specs.append(spec)
        self.started.set()
        if on_log is not None:
            await on_log(f"running {spec.env.get('CNAB_ACTION')}\n".encode())
        # `hold` is released from the test's thread, so poll it rather than await an asyncio.Event.
        await wait_until_async(
            lambda: not self.hold.is_set() or spec.run_id in self.canceled,
            f"the test to release run {spec.run_id}",
        )
        if spec.run_id in self.canceled:
            return ContainerResult(exit_code=143, canceled=True)
        result = self.behaviour(spec)
        if on_log is not None and result.logs:
            await on_log(result.logs)
        return result

    async def ping(self) -> None:
        return None

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        self.canceled.add(run_id)
        return True

    async def recover(self, run_id: str, *, keep: bool = False) -> ContainerResult | None:
        self.recovered.append(run_id)
        return self.recoverable.pop(run_id, None)

    async def remove(self, run_id: str) -> bool:
        self.removed.append(run_id)
        return True

    async def orphans(self) -> list[str]:
        return list(self.orphan_ids)

    async def settle(self, wait_seconds: float) -> bool:
        return True


class FlakyEngine(FakeExecutor):
    """Stops answering once a run's container has started (``down``) until the test says
    it is back; the container's result is then ``recoverable``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    async def execute(
        self, spec: ContainerSpec, on_log: LogSink | None = None, *, keep: bool = False
    ) -> ContainerResult:
        self.specs.append(spec)
        if on_log is not None:
            await on_log(b"started\n")
        self.down.set()
        lost = ExecutorUnavailable("the container engine at unix:///flaky.sock stopped answering")
        lost.started = True
        raise lost

    async def ping(self) -> None:
        if self.down.is_set():
            raise ExecutorUnavailable("the container engine at unix:///flaky.sock does not answer")

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        await self.ping()
        return await super().cancel(run_id, grace_seconds)


class ScriptedExecutor(FakeExecutor):
    """A run goes on until the test ends it: ``write`` appends output, ``exit`` finishes it."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: dict[str, asyncio.Queue[bytes | int | str]] = {}

    async def execute(
        self, spec: ContainerSpec, on_log: LogSink | None = None, *, keep: bool = False
    ) -> ContainerResult:
        assert on_log is not None
        self.loop = asyncio.get_running_loop()
        queue = self.queues[spec.run_id] = asyncio.Queue()
        self.specs.append(spec)
        while True:
            item = await queue.get()
            if item == "cancel":
                return ContainerResult(exit_code=143, canceled=True)
            if isinstance(item, int):
                return ContainerResult(exit_code=item)
            assert isinstance(item, bytes)
            await on_log(item)

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        self.canceled.add(run_id)
        if run_id in self.queues:
            self.queues[run_id].put_nowait("cancel")
        return True

    def _send(self, run_id: str, item: bytes | int) -> None:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self.queues[run_id].put(item), self.loop).result(5)

    def write(self, run_id: str, data: bytes) -> None:
        self._send(run_id, data)

    def exit(self, run_id: str, code: int = 0) -> None:
        self._send(run_id, code)

    def wait_started(self, run_id: str, within: float = 15.0) -> None:
        """Blocks until the run's container has started (``within`` seconds at most)."""
        wait_until(lambda: run_id in self.queues, f"the container of run {run_id}", timeout=within)


def services_with(
    store: Database,
    fake: FakeExecutor,
    *,
    max_concurrent_runs: int = 2,
    cancel_grace: float = 1,
    engine_retry: float = 60,
    **services: Any,
) -> Services:
    """Services over ``store`` whose runs go to ``fake`` (no network, 30 s timeout);
    ``services``: more arguments of Services.create."""
    return Services.create(
        store,
        executor=lambda: fake,
        action_settings=ActionSettings(
            run_timeout_seconds=30,
            max_concurrent_runs=max_concurrent_runs,
            cancel_grace_seconds=cancel_grace,
            network=None,
            engine_retry_seconds=engine_retry,
        ),
        **services,
    )


def services_on(store: Database, engine: FakeExecutor, **services: Any) -> Services:
    """Services over ``store`` whose runs go to ``engine``, one at a time, 30 s at most."""
    return services_with(store, engine, max_concurrent_runs=1, cancel_grace=10, **services)
