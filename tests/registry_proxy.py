"""A real HTTP front for a docker-registry: bearer-token auth as ghcr.io does it, request
counting, and faults on demand (5xx, 401/403, corrupted bodies, blob redirects).

Plain ``http.server`` in a thread, forwarding to the registry with ``http.client``: the
client under test speaks real HTTP to it, and the registry behind it is the real one.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_REPO = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags)/")


@dataclass
class Fault:
    """An answer given instead of the registry's to requests whose path matches."""

    status: int
    path: str = ""
    """Regex searched in the request path ("" = every /v2/ request)."""
    body: bytes = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """A request the proxy received."""

    method: str
    path: str
    authorization: str


class RegistryProxy:
    """Serves on ``127.0.0.1:<port>`` in front of ``upstream`` (a ``host:port``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.users: dict[str, str] = {}
        """user -> password the token service accepts; empty: anonymous tokens for all."""
        self.bearer = True
        """Whether /v2/ wants a bearer token (a 401 challenge otherwise)."""
        self.anonymous = True
        """Whether the token service hands out tokens without credentials."""
        self.forbidden_repos: set[str] = set()
        self.faults: list[Fault] = []
        self.corrupt: str = ""
        """Regex of paths whose response bodies get a byte flipped."""
        self.redirect_blobs = False
        """GET of a blob answers 307 to /storage/... on 'localhost' (another host name)."""
        self.seen: list[Seen] = []
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> RegistryProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Clears counters and faults (auth settings stay)."""
        with self._lock:
            self.seen.clear()
        self.faults.clear()
        self.corrupt = ""
        self.redirect_blobs = False
        self.forbidden_repos.clear()

    def revoke_tokens(self) -> None:
        """Every token handed out so far stops working (clients must ask again)."""
        with self._lock:
            self._tokens.clear()

    def requests(self, method: str = "", contains: str = "") -> list[Seen]:
        """Requests seen so far (token requests included), optionally filtered."""
        with self._lock:
            return [
                s for s in self.seen if (not method or s.method == method) and contains in s.path
            ]

    # --- handler -------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization", "")
                with proxy._lock:
                    proxy.seen.append(Seen(self.command, self.path, auth))
                path = urlsplit(self.path).path
                if path == "/token":
                    return self._token()
                if path.startswith("/storage/"):
                    return self._forward("GET", path.replace("/storage/", "/v2/", 1), b"")
                for fault in proxy.faults:
                    if path.startswith("/v2/") and re.search(fault.path, path):
                        return self._answer(
                            fault.status,
                            fault.body,
                            {"Content-Type": "application/json", **fault.headers},
                        )
                match = _REPO.match(path)
                repo = match.group(1) if match else ""
                if proxy.bearer and path.startswith("/v2/"):
                    token = auth.removeprefix("Bearer ")
                    if not auth.startswith("Bearer ") or token not in proxy._tokens:
                        action = "pull" if self.command in ("GET", "HEAD") else "pull,push"
                        challenge = (
                            f'Bearer realm="http://{proxy.host}/token",service="proxy",'
                            f'scope="repository:{repo}:{action}"'
                        )
                        return self._answer(
                            401,
                            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                            {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                        )
                if repo in proxy.forbidden_repos:
                    return self._answer(
                        403,
                        b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}',
                        {"Content-Type": "application/json"},
                    )
                if proxy.redirect_blobs and self.command == "GET" and "/blobs/sha" in path:
                    location = (
                        f"http://localhost:{proxy.port}{path.replace('/v2/', '/storage/', 1)}"
                    )
                    return self._answer(307, b"", {"Location": location})
                return self._forward(self.command, self.path, body)

            def _token(self) -> None:
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if proxy.users.get(user) != password or not password:
                        return self._answer(
                            401,
                            b'{"details":"incorrect username or password"}',
                            {"Content-Type": "application/json"},
                        )
                elif not proxy.anonymous:
                    return self._answer(
                        401,
                        b'{"details":"anonymous access is not allowed"}',
                        {"Content-Type": "application/json"},
                    )
                query = parse_qs(urlsplit(self.path).query)
                assert query.get("service") == ["proxy"], query
                token = secrets.token_hex(16)
                with proxy._lock:
                    proxy._tokens.add(token)
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self._answer(200, body, {"Content-Type": "application/json"})

            def _forward(self, method: str, target: str, body: bytes) -> None:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("authorization", "connection", "content-length")
                }
                conn.request(method, target, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if proxy.corrupt and data and re.search(proxy.corrupt, target):
                    data = data[:-1] + bytes([data[-1] ^ 0x01])
                out = {
                    k: v
                    for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "connection", "transfer-encoding")
                }
                self.send_response(response.status)
                for k, v in out.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        return Handler


@contextmanager
def registry_proxy(upstream: str) -> Iterator[RegistryProxy]:
    """A started proxy in front of ``upstream``; closed afterwards."""
    proxy = RegistryProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.close()
