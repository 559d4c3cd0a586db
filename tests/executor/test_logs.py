"""The log pump: chunks in order to the consumer, kept up to a limit, a failing consumer cut off."""

from __future__ import annotations

import asyncio

import pytest

from porter_bundle.executor.logs import LogPump


async def pump_all(pump: LogPump, *chunks: bytes) -> None:
    for chunk in chunks:
        pump.queue.put_nowait(chunk)
    pump.queue.put_nowait(None)
    await pump.run()


async def test_every_chunk_reaches_the_sink_in_order_and_is_kept() -> None:
    seen: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        seen.append(chunk)

    pump = LogPump(asyncio.Queue(), sink, limit=100)
    await pump_all(pump, b"one ", b"", b"two")
    assert seen == [b"one ", b"two"]
    assert (pump.total, pump.logs()) == (7, b"one two")


async def test_what_is_over_the_limit_is_counted_not_kept() -> None:
    pump = LogPump(asyncio.Queue(), None, limit=5)
    await pump_all(pump, b"0123", b"456789")
    assert pump.logs() == b"01234\n[log truncated: 5 more bytes]\n"


async def test_a_failing_sink_gets_nothing_more(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        calls.append(chunk)
        raise RuntimeError("consumer gone")

    pump = LogPump(asyncio.Queue(), sink, limit=100)
    await pump_all(pump, b"a", b"b")
    assert calls == [b"a"]
    assert pump.logs() == b"ab"
    assert "the log consumer failed" in caplog.text
