"""Database.close() leaves no connection open: also one a thread still held when the store was
closed (a run's task, a stream's re-check) is closed as it comes back to the pool, rather than
left to the garbage collector (psycopg warns of that: a ResourceWarning)."""

from __future__ import annotations

import pytest


def test_a_connection_given_back_after_close_is_closed(store):
    held = store.engine.raw_connection()  # checked out, as by a thread still at work
    dbapi = held.dbapi_connection
    cur = dbapi.cursor()
    cur.execute("SELECT 1")
    cur.close()
    store.close()
    held.close()  # back to the (disposed) pool
    with pytest.raises(store.engine.dialect.loaded_dbapi.Error):
        dbapi.cursor().execute("SELECT 1")


def test_connections_of_an_open_store_stay_open_in_the_pool(store):
    first = store.engine.raw_connection()
    dbapi = first.dbapi_connection
    first.close()
    again = store.engine.raw_connection()
    try:
        assert again.dbapi_connection is dbapi  # pooled, not closed on check-in
        cur = dbapi.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone()[0] == 1
        cur.close()
    finally:
        again.close()
