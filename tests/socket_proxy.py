"""A Unix socket proxy a test can stop and start again: a container engine that goes away
(its socket gone, every connection cut) and comes back, with the real engine behind it."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path


class UnixSocketProxy:
    """Forwards connections on ``path`` to the Unix socket ``target``."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        """Listens on ``path`` (again)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Stops listening, removes the socket file and cuts every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.path.unlink(missing_ok=True)
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.target))
            except OSError:
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            ends = threading.Semaphore(0)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, ends), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, ends: threading.Semaphore) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            if ends.acquire(blocking=False):  # the other direction ended first: close both
                with self._lock:
                    self._conns.difference_update((source, sink))
                source.close()
                sink.close()
            else:
                ends.release()
