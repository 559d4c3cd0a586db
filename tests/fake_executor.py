"""A scripted stand-in at the executor boundary, for tests of the logic above it only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from porter_bundle.executor.base import ContainerResult, ContainerSpec, LogSink


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

    async def execute(self, spec: ContainerSpec, on_log: LogSink | None = None) -> ContainerResult:
        self.specs.append(spec)
        self.started.set()
        if on_log is not None:
            await on_log(f"running {spec.env.get('CNAB_ACTION')}\n".encode())
        # `hold` is released from the test's thread, so poll it rather than await an asyncio.Event.
        while self.hold.is_set() and spec.run_id not in self.canceled:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if spec.run_id in self.canceled:
            return ContainerResult(exit_code=143, canceled=True)
        result = self.behaviour(spec)
        if on_log is not None and result.logs:
            await on_log(result.logs)
        return result

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        self.canceled.add(run_id)
        return True

    async def recover(self, run_id: str) -> ContainerResult | None:
        self.recovered.append(run_id)
        return self.recoverable.pop(run_id, None)

    async def orphans(self) -> list[str]:
        return list(self.orphan_ids)
