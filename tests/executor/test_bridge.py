"""The thread bridge: blocking calls in the executor's pool, long waits in threads of their own."""

from __future__ import annotations

import asyncio
import threading

import pytest

from porter_bundle.executor.bridge import CallPool, in_thread


async def test_a_call_runs_in_the_pool() -> None:
    pool = CallPool(threads=1)
    try:
        name = await pool.call(lambda: threading.current_thread().name)
        assert name.startswith("porter-bundle-engine")
        assert await pool.call(int, "42", base=8) == 34
    finally:
        pool.shutdown()


async def test_in_thread_delivers_a_result_from_a_daemon_thread() -> None:
    def work() -> tuple[str, bool]:
        return threading.current_thread().name, threading.current_thread().daemon

    loop = asyncio.get_running_loop()
    assert await in_thread(loop, "porter-bundle-test", work) == ("porter-bundle-test", True)


async def test_in_thread_delivers_an_exception() -> None:
    def fail() -> None:
        raise ValueError("no such container")

    with pytest.raises(ValueError, match="no such container"):
        await in_thread(asyncio.get_running_loop(), "porter-bundle-test", fail)
