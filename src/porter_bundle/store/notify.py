"""PostgreSQL LISTEN/NOTIFY on one channel: how replicas sharing a database tell each other
that a run changed or its log grew (see :mod:`porter_bundle.service.relay`).

Two threads, each with a connection of its own outside the pool: a sender, which batches the
payloads queued since its last round trip into one ``SELECT pg_notify(...)``, and a listener.
Both reconnect after an error and lose what was in flight: a notification is a doorbell, the
streams' bounded re-check of the store is what guarantees delivery. Payloads name IDs and
offsets only, never a value.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from porter_bundle.store.engine import Database

log = logging.getLogger(__name__)

CHANNEL = "porter_bundle_runs"
RETRY_SECONDS = 1.0
"""Pause before reconnecting after a connection failed."""
_BATCH = 500
"""Payloads sent in one round trip at most."""


class Notifications:
    """Publishes payloads on :data:`CHANNEL` and hands every payload received to a callback."""

    def __init__(self, db: Database) -> None:
        if db.is_sqlite:
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        self._db = db
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()
        """Set once the listener's LISTEN is in place (tests wait for it)."""

    def _connect(self) -> Any:
        """A new autocommit DBAPI connection with the store's own connect arguments."""
        dialect = self._db.engine.dialect
        cargs, cparams = dialect.create_connect_args(self._db.engine.url)
        conn = dialect.loaded_dbapi.connect(*cargs, **cparams)
        conn.autocommit = True
        return conn

    def start(self, on_payload: Callable[[str], None]) -> None:
        """Starts the sender and the listener, which calls ``on_payload`` (on its thread)."""
        for target, name in ((self._send, "notify-send"), (self._listen, "notify-listen")):
            args = () if target == self._send else (on_payload,)
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def publish(self, payload: str) -> None:
        """Queues a payload (any thread; never blocks)."""
        if not self._stopped.is_set():
            self._outbox.put(payload)

    def close(self, timeout: float = 2.0) -> None:
        """Stops both threads (waiting up to ``timeout`` seconds for each)."""
        self._stopped.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _send(self) -> None:
        conn: Any = None
        while not self._stopped.is_set():
            first = self._outbox.get()
            if first is None:
                break
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while len(batch) < _BATCH:
                    item = self._outbox.get_nowait()
                    if item is None:
                        self._stopped.set()
                        break
                    batch.append(item)
            payloads = list(dict.fromkeys(batch))  # the same news once, in order
            try:
                if conn is None:
                    conn = self._connect()
                conn.execute(
                    "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (CHANNEL, payloads)
                )
            except Exception as exc:
                log.warning("could not notify the other replicas: %s", type(exc).__name__)
                _closed(conn)
                conn = None
                self._stopped.wait(RETRY_SECONDS)
        _closed(conn)

    def _listen(self, on_payload: Callable[[str], None]) -> None:
        conn: Any = None
        while not self._stopped.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                for note in conn.notifies(timeout=0.5):
                    on_payload(note.payload)
            except Exception as exc:
                log.warning("lost the notifications of other replicas: %s", type(exc).__name__)
                self.listening.clear()
                _closed(conn)
                conn = None
                self._stopped.wait(RETRY_SECONDS)
        _closed(conn)


def _closed(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


__all__ = ["CHANNEL", "Notifications"]
