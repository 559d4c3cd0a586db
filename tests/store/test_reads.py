"""SQLite reads keep one connection per thread: it must never see a stale snapshot, and
closing the store closes it."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from porter_bundle import store as queries

DIGEST = "sha256:" + "cd" * 32


def test_kept_read_connection_sees_later_commits_and_is_closed_with_the_store(store):
    if not store.is_sqlite:
        pytest.skip("kept read connections are SQLite's")
    seen: list[str | None] = []
    kept = []

    def read_twice(written: threading.Event, read_once: threading.Event) -> None:
        with store.read() as r:
            seen.append(queries.get_bundle_document(r, DIGEST))
            kept.append(r)
        read_once.set()
        written.wait(10)
        with store.read() as r:
            seen.append(queries.get_bundle_document(r, DIGEST))
            kept.append(r)

    written, read_once = threading.Event(), threading.Event()
    reader = threading.Thread(target=read_twice, args=(written, read_once))
    reader.start()
    read_once.wait(10)
    with store.write() as s:
        queries.put_bundle_document(s, DIGEST, "{}")
    written.set()
    reader.join(10)
    assert seen == [None, "{}"]
    assert kept[0] is kept[1]  # the same connection, kept by that thread

    driver = kept[0]._raw.driver_connection  # the sqlite3 connection behind the kept one
    driver.execute("select 1").close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        driver.execute("select 1")
