"""Bundle documents are content-addressed: storing the same digest twice, even from two
transactions at once, keeps one row and never fails."""

from __future__ import annotations

import threading
import time

from porter_bundle import store as queries

DIGEST = "sha256:" + "ab" * 32
CONTENT = '{"name":"hello","version":"0.1.0"}'


def test_same_digest_twice_keeps_one_row(store):
    with store.write() as s:
        queries.put_bundle_document(s, DIGEST, CONTENT)
        queries.put_bundle_document(s, DIGEST, CONTENT)
    with store.write() as s:
        queries.put_bundle_document(s, DIGEST, CONTENT)
    with store.read() as r:
        assert queries.get_bundle_document(r, DIGEST) == CONTENT


def test_concurrent_writers_of_one_digest_both_succeed(store):
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
        time.sleep(0.3)  # let B reach its insert while A's row is uncommitted
    b.join(30)
    assert not b.is_alive()
    assert errors == []
    with store.read() as r:
        assert queries.get_bundle_document(r, DIGEST) == CONTENT
