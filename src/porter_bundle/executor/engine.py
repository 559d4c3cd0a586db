"""Reaching a container engine: where one listens, the probe, the API version, error words.

:func:`connect` tries each address in turn and returns the first :class:`Engine` that
answers; an engine that stops answering later surfaces as ExecutorUnavailable through
:func:`unreachable_as_unavailable`.

No engine call waits for ever: the probe has its own short timeout, every request the
default one, a pull a read timeout between two of its progress messages
(:data:`PULL_READ_TIMEOUT_SECONDS`). Only the two long waits of a running container (its log
stream, its exit) have none: they end with the container, which the run's own time limit
bounds, and they run in daemon threads that never hold up the process's exit. :func:`engine_words` and :func:`describe` turn a
failure into the short text that goes into results and log lines.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.utils
import requests
from docker.constants import DEFAULT_DOCKER_API_VERSION
from docker.transport.unixconn import UnixHTTPConnection

from porter_bundle.executor.base import ExecutorUnavailable

DEFAULT_REQUEST_TIMEOUT_SECONDS = 60
"""For every engine call that is not a stream, a pull or a wait."""
DEFAULT_PROBE_TIMEOUT_SECONDS = 5
"""For trying one engine address, and for :meth:`Engine.ping` before a run is accepted."""
PULL_READ_TIMEOUT_SECONDS = 300
"""Longest silence of a pull (between two progress messages) before it counts as hung."""

# How much of an engine's error message goes into a result.
MAX_ERROR_CHARS = 1000


@dataclass
class Engine:
    """A connected engine."""

    api: docker.APIClient
    url: str
    libpod_version: str | None
    """Podman's own API version when the engine is Podman (its native endpoints need it)."""
    probe_timeout: int = DEFAULT_PROBE_TIMEOUT_SECONDS

    def ping(self) -> None:
        """Blocking: the engine answers ``/_ping`` within the probe timeout, else
        ExecutorUnavailable naming it."""
        url = f"{self.api.base_url}/_ping"
        try:
            check_socket(self.url, self.probe_timeout)  # the SDK leaks a refused socket
        except OSError as exc:
            raise ExecutorUnavailable(
                f"the container engine at {self.url} does not answer: {describe(exc)}"
            ) from None
        with (
            unreachable_as_unavailable(self.url),
            self.api.get(url, timeout=self.probe_timeout) as response,
        ):
            if response.status_code != 200:
                raise ExecutorUnavailable(
                    f"the container engine at {self.url} answered /_ping "
                    f"with HTTP {response.status_code}"
                )


def default_hosts() -> list[str]:
    """Where an engine usually listens, in the order they are tried when no host is given."""
    hosts = []
    if os.environ.get("DOCKER_HOST"):
        hosts.append(os.environ["DOCKER_HOST"])
    hosts.append("unix:///var/run/docker.sock")
    if os.environ.get("XDG_RUNTIME_DIR"):
        hosts.append(f"unix://{os.environ['XDG_RUNTIME_DIR']}/podman/podman.sock")
    hosts.append("unix:///run/podman/podman.sock")
    return list(dict.fromkeys(hosts))


def connect(host: str | None, *, probe_timeout: int, request_timeout: int) -> Engine:
    """The engine at ``host``, else the first of :func:`default_hosts` that answers; blocking.

    ExecutorUnavailable, listing every address tried and why it failed, when none does.
    """
    hosts = [host] if host else default_hosts()
    failures = []
    for url in hosts:
        try:
            return _probe(url, probe_timeout=probe_timeout, request_timeout=request_timeout)
        except Exception as exc:
            failures.append(f"{url} ({describe(exc)})")
    raise ExecutorUnavailable("no container engine answered; tried: " + "; ".join(failures))


def check_socket(url: str, timeout: float) -> None:
    """For a ``unix://`` address, connects once (OSError when nobody listens). Checked before
    the SDK is: it leaks the socket of a failed connect (ResourceWarning), and this names
    the failure plainly."""
    if url.startswith("unix://"):
        path = url.removeprefix("unix://")
        if not os.path.exists(path):
            raise FileNotFoundError("no such socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            probe.connect(path)


def _probe(url: str, *, probe_timeout: int, request_timeout: int) -> Engine:
    check_socket(url, probe_timeout)
    kwargs: dict[str, Any] = {}
    if url == os.environ.get("DOCKER_HOST"):
        # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH go with DOCKER_HOST, as for the docker CLI.
        kwargs = dict(docker.utils.kwargs_from_env())
    kwargs["base_url"] = url
    # Only /_ping: its headers give the API version and whether this is Podman, where
    # /version costs most of a second (Podman runs conmon and the OCI runtime to answer).
    # The short timeout keeps a dead TCP address from holding up the next candidate.
    with (
        docker.APIClient(
            version=DEFAULT_DOCKER_API_VERSION, timeout=probe_timeout, **kwargs
        ) as probe_api,
        # Session.get, unlike the SDK's own calls, takes no default timeout: give it one, or an
        # engine that accepts the connection and never answers holds the caller for ever.
        probe_api.get(f"{probe_api.base_url}/_ping", timeout=probe_timeout) as response,
    ):
        if response.status_code != 200:
            raise ConnectionError(f"/_ping answered HTTP {response.status_code}")
        server_version = response.headers.get("Api-Version")
        libpod_version = response.headers.get("Libpod-Api-Version")
    return Engine(
        docker.APIClient(
            version=_common_api_version(server_version),
            timeout=request_timeout,
            # Each active run holds two connections (log stream, wait) beside short calls.
            max_pool_size=64,
            **kwargs,
        ),
        url,
        libpod_version,
        probe_timeout,
    )


def _common_api_version(server: str | None) -> str:
    """The newest API version both the SDK and the server speak."""
    if not server:
        return DEFAULT_DOCKER_API_VERSION
    try:
        newer = tuple(map(int, server.split("."))) >= tuple(
            map(int, DEFAULT_DOCKER_API_VERSION.split("."))
        )
    except ValueError:
        return DEFAULT_DOCKER_API_VERSION
    return DEFAULT_DOCKER_API_VERSION if newer else server


@contextlib.contextmanager
def unreachable_as_unavailable(url: str) -> Iterator[None]:
    """An engine that stops answering mid-way (a dropped connection, or a request it did not
    answer in time) is ExecutorUnavailable, as one never reached."""
    try:
        yield
    except requests.exceptions.Timeout as exc:
        raise ExecutorUnavailable(
            f"the container engine at {url} did not answer in time: {describe(exc)}"
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise ExecutorUnavailable(
            f"the container engine at {url} stopped answering: {describe(exc)}"
        ) from exc


def _connect_or_close(self: UnixHTTPConnection) -> None:
    """The SDK's ``UnixHTTPConnection.connect``, closing its socket when the connect fails:
    the SDK's own leaves it to the garbage collector (a ResourceWarning for every call made
    while an engine is down, which a run re-attaching to its container makes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(self.timeout)
        sock.connect(self.unix_socket)
    except BaseException:
        sock.close()
        raise
    self.sock = sock


UnixHTTPConnection.connect = _connect_or_close  # type: ignore[method-assign]


def engine_words(exc: BaseException) -> str:
    """The engine's own explanation of a failure, shortened."""
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = str(exc.explanation)
    else:
        text = str(exc) or type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def describe(exc: BaseException) -> str:
    """A failure as its type and message, shortened (for results and log lines)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR_CHARS] if text else type(exc).__name__
