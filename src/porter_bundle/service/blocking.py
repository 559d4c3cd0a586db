"""The one threading policy: every blocking call (database, files, the engine probe) runs on
one bounded pool, made once by the composition root and sized by ``--workers``.

The event loop's default executor is never used: :class:`Blocking` runs calls on the pool it
is given, in a copy of the caller's context (as ``asyncio.to_thread`` does, so the caller's
access and the like are seen there too).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

THREAD_NAME_PREFIX = "porter-bundle-worker"


class Blocking:
    """Runs blocking calls on one bounded pool, from the event loop."""

    def __init__(self, pool: Executor) -> None:
        self.pool = pool
        """The pool; the server's RPC handlers run their blocking calls on it too."""

    @classmethod
    def with_workers(cls, workers: int) -> Blocking:
        """A new pool of ``workers`` threads; its owner shuts it down (:meth:`close`)."""
        return cls(ThreadPoolExecutor(max_workers=workers, thread_name_prefix=THREAD_NAME_PREFIX))

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the pool, in a copy of the current context."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.pool, call)

    async def aclose(self, wait_seconds: float) -> bool:
        """Shuts the pool down: queued calls are dropped; waits up to ``wait_seconds`` for
        the running ones (on a thread of its own, the loop keeps going). True when every call
        has finished, so what they use (the database) may be closed; closing a SQLite
        connection that a worker is still reading crashes the process."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def wait() -> None:
            self.pool.shutdown(wait=True)
            with contextlib.suppress(RuntimeError):  # the loop may be gone by then
                loop.call_soon_threadsafe(_settle, finished)

        threading.Thread(target=wait, name=f"{THREAD_NAME_PREFIX}-drain", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(finished), wait_seconds)
        except TimeoutError:
            return False
        return True


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@functools.cache
def shared() -> Blocking:
    """One pool for the process, for services built without one (tests, one-shot commands);
    the server builds its own from ``--workers``."""
    return Blocking(ThreadPoolExecutor(thread_name_prefix=THREAD_NAME_PREFIX))


__all__ = ["Blocking", "shared"]
