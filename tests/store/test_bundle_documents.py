"""Bundle documents are content-addressed: storing the same digest twice, even from two
transactions at once, keeps one row and never fails."""

from __future__ import annotations

import threading

from sqlalchemy import create_engine, text

from porter_bundle import store as queries
from tests.helpers import wait_until

DIGEST = "sha256:" + "ab" * 32
CONTENT = '{"name":"hello","version":"0.1.0"}'


def _lock_waiters(database_url: str) -> int:
    """How many sessions of the database wait for a lock (PostgreSQL)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_same_digest_twice_keeps_one_row(store):
    with store.write() as s:
        queries.put_bundle_document(s, DIGEST, CONTENT)
        queries.put_bundle_document(s, DIGEST, CONTENT)
    with store.write() as s:
        queries.put_bundle_document(s, DIGEST, CONTENT)
    with store.read() as r:
        assert queries.get_bundle_document(r, DIGEST) == CONTENT


def test_concurrent_writers_of_one_digest_both_succeed(store, database_url):
    # A stores the document and holds its transaction open while B stores the same digest;
    # on PostgreSQL B's insert waits for A's row and must then skip it, not fail.
    a_stored = threading.Event()
    errors: list[BaseException] = []

    def writer_b() -> None:
        a_stored.wait(10)
        try:
            with store.write() as s:
                queries.put_bundle_document(s, DIGEST, CONTENT)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    b = threading.Thread(target=writer_b)
    b.start()
    with store.write() as s:
        queries.put_bundle_document(s, DIGEST, CONTENT)
        a_stored.set()
        # On PostgreSQL, B reaches its insert and waits for A's uncommitted row. (SQLite's
        # BEGIN IMMEDIATE keeps B out of any transaction until A commits: nothing to wait for.)
        if database_url.startswith("postgresql"):
            wait_until(lambda: _lock_waiters(database_url) > 0, "B to wait for A's row")
    b.join(30)
    assert not b.is_alive()
    assert errors == []
    with store.read() as r:
        assert queries.get_bundle_document(r, DIGEST) == CONTENT
