"""The thread bridge: how the asyncio executor drives the synchronous ``docker`` SDK.

Every engine call blocks, so every one runs in a thread:

- short calls (inspect, create, start, kill, archives, pulls) go to :class:`CallPool`, a
  small pool owned by the executor, so they never compete with the application's default
  executor;
- each running container holds two daemon threads of its own (:func:`in_thread`) for its
  lifetime: one follows its log (the only way the SDK streams), one blocks in the engine's
  ``wait``. A thread that only waits on a socket costs little, the service bounds how many
  runs are active, and the alternative (polling the container state) would cost the engine
  a request per run every few hundred milliseconds. Daemon threads, because a still-running
  container must never keep the process from exiting.

Results come back to the event loop with :func:`post`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_ENGINE_THREADS = 8
"""Threads for short engine calls (long waits have threads of their own)."""


class CallPool:
    """A bounded pool of threads for short blocking engine calls."""

    def __init__(self, threads: int = DEFAULT_ENGINE_THREADS) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="porter-bundle-engine"
        )

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs a blocking engine call in the pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def shutdown(self, *, cancel_futures: bool = False) -> None:
        """Stops the pool without waiting for calls under way."""
        self._pool.shutdown(wait=False, cancel_futures=cancel_futures)


def post(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    """Hands a call to the event loop from a thread; dropped if the loop has closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def in_thread(loop: asyncio.AbstractEventLoop, name: str, fn: Callable[[], T]) -> asyncio.Future[T]:
    """Runs ``fn`` in a daemon thread of its own; its result arrives in the returned future."""
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def main() -> None:
        try:
            result = fn()
        except BaseException as exc:
            post(loop, settle, None, exc)
        else:
            post(loop, settle, result, None)

    # Nobody may be left to look at a failure once a run is detached: keep asyncio quiet.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    threading.Thread(target=main, name=name, daemon=True).start()
    return future
