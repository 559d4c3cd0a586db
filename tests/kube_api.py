"""A small local HTTP stand-in of the Kubernetes API: Secrets only (GET one), bearer-token checked."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class KubeApi:
    url: str
    token: str
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    """(namespace, name) -> data (plain text; served base64 as Kubernetes does)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(path, authorization header) of each request."""


@contextmanager
def kube_api(token: str = "sa-token") -> Iterator[KubeApi]:
    state = KubeApi("", token)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            state.requests.append((self.path, auth))
            if auth != f"Bearer {state.token}":
                return self._send(401, {"kind": "Status", "reason": "Unauthorized", "code": 401})
            parts = self.path.strip("/").split("/")
            if len(parts) != 6 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "secrets":
                return self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})
            found = state.secrets.get((parts[3], parts[5]))
            if found is None:
                return self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})
            data = {k: base64.b64encode(v.encode()).decode() for k, v in found.items()}
            meta = {"name": parts[5], "namespace": parts[3]}
            return self._send(
                200, {"kind": "Secret", "apiVersion": "v1", "metadata": meta, "data": data}
            )

        def _send(self, code: int, body: dict[str, object]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
