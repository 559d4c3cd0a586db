"""Containers of finished runs, removed in the background: a run's result needs nothing more
of its container, so recording the run does not wait for the engine to delete it.

Removals are never lost: :meth:`Removals.settle` waits for them (``ContainerExecutor.settle``
and ``aclose``, which the service calls on shutdown), and a container a crash left behind
still carries its labels, so the next start finds it among the orphans and removes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Removals:
    """Background removals on the running event loop."""

    def __init__(self, remove: Callable[[str], Coroutine[Any, Any, object]]) -> None:
        """``remove``: removes one container, logging (never raising) a failure."""
        self._remove = remove
        self._pending: dict[str, asyncio.Task[object]] = {}

    def soon(self, run_id: str, container_id: str) -> None:
        """Starts removing the run's container; returns at once."""
        task = asyncio.get_running_loop().create_task(
            self._remove(container_id), name=f"remove-{container_id[:12]}"
        )
        self._pending[run_id] = task
        task.add_done_callback(lambda _: self._forget(run_id, task))

    def _forget(self, run_id: str, task: asyncio.Task[object]) -> None:
        if self._pending.get(run_id) is task:
            del self._pending[run_id]

    async def done(self, run_id: str) -> None:
        """Returns once no container of the run is being removed (a new one may take its name)."""
        task = self._pending.get(run_id)
        if task is not None:
            await asyncio.shield(task)

    @property
    def pending(self) -> int:
        """How many removals are under way."""
        return len(self._pending)

    async def settle(self, wait_seconds: float) -> bool:
        """Waits up to ``wait_seconds`` for every removal under way (also those started
        meanwhile); False if some did not finish (their containers stay orphans)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while self._pending:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._pending.values()), timeout=left)
        return True
