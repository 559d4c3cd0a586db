"""The Kubernetes API as the Job executor uses it: JSON in, JSON out, over ``kubernetes-asyncio``.

``kubernetes-asyncio`` loads the configuration (a kubeconfig, or the pod's service account in a
cluster), authenticates and carries the requests; the executor works on plain JSON objects (the
shapes of the API documentation), as :mod:`porter_bundle.executor.jobs` builds them, so the
typed models are not used. Every failure to reach the API raises
:class:`~porter_bundle.executor.base.ExecutorUnavailable` naming it; an answer other than 2xx
raises :class:`KubeError` with the API's own reason and message (which never hold a Secret's
data).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from porter_bundle.executor.base import ExecutorUnavailable

DEFAULT_REQUEST_SECONDS = 30.0
FOLLOW_READ_SECONDS = 600.0
"""A followed stream (log, watch) that says nothing for this long is given up and reopened."""

Query = Sequence[tuple[str, str]]


class KubeError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        text = " ".join(filter(None, (f"HTTP {status}", reason)))
        super().__init__(f"{text}: {message}" if message else text)
        self.status = status
        self.reason = reason
        self.message = message


class KubeClient:
    """A connection to one cluster: its configuration checked when built (ExecutorUnavailable
    when there is none), connected on first use (:meth:`connect`)."""

    def __init__(self, kubeconfig: str = "", *, request_seconds: float = DEFAULT_REQUEST_SECONDS):
        """``kubeconfig``: the file to read; "" for the pod's service account (in a cluster)."""
        self._kubeconfig = kubeconfig
        self._request_seconds = request_seconds
        self._api: client.ApiClient | None = None
        self._lock = asyncio.Lock()
        self.host = "the Kubernetes API"
        self._in_cluster: client.Configuration | None = None
        # What can be checked without I/O on the network fails here, at once (as the container
        # executor fails to build without an engine), not at the first run.
        if kubeconfig and not Path(kubeconfig).is_file():
            raise ExecutorUnavailable(f"the kubeconfig {kubeconfig} does not exist")
        if not kubeconfig:
            self._in_cluster = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=self._in_cluster)  # type: ignore[no-untyped-call]
            except (ConfigException, OSError) as exc:
                raise ExecutorUnavailable(
                    f"no Kubernetes configuration: not in a pod ({exc}) and no --kubeconfig"
                ) from None
            self.host = self._in_cluster.host or self.host

    async def connect(self) -> client.ApiClient:
        """The configured client; ExecutorUnavailable when there is no usable configuration."""
        async with self._lock:
            if self._api is None:
                if self._in_cluster is not None:
                    configuration = self._in_cluster
                else:
                    configuration = client.Configuration()
                    try:
                        await config.load_kube_config(
                            config_file=self._kubeconfig,
                            client_configuration=configuration,
                            persist_config=False,
                        )
                    except (ConfigException, OSError, ValueError) as exc:
                        raise ExecutorUnavailable(
                            f"the kubeconfig {self._kubeconfig} cannot be used: {exc}"
                        ) from None
                self.host = configuration.host or self.host
                self._api = client.ApiClient(configuration)
            return self._api

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def request(
        self, method: str, path: str, query: Query = (), body: Any = None, *, patch: bool = False
    ) -> dict[str, Any]:
        """One call; its JSON answer. ``patch``: ``body`` is a JSON merge patch."""
        async with self._open(method, path, query, body, patch=patch) as resp:
            raw = await resp.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            raise KubeError(resp.status, "BadResponse", "the API answered no JSON") from None
        return answer if isinstance(answer, dict) else {}

    async def maybe(self, method: str, path: str, query: Query = (), body: Any = None) -> Any:
        """:meth:`request`, None when the object does not exist (404)."""
        try:
            return await self.request(method, path, query, body)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    @asynccontextmanager
    async def stream(self, path: str, query: Query) -> AsyncIterator[aiohttp.StreamReader]:
        """A long-lived GET (a followed log, a watch): its body as it arrives."""
        async with self._open("GET", path, query, None, follow=True) as resp:
            yield resp.content

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        query: Query,
        body: Any,
        *,
        patch: bool = False,
        follow: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        api = await self.connect()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = (
                "application/merge-patch+json" if patch else "application/json"
            )
        timeout: Any = (
            aiohttp.ClientTimeout(
                total=None, connect=self._request_seconds, sock_read=FOLLOW_READ_SECONDS
            )
            if follow
            else self._request_seconds
        )
        try:
            resp: aiohttp.ClientResponse = await api.call_api(
                path,
                method,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ExecutorUnavailable(
                f"the Kubernetes API at {self.host} cannot be reached ({type(exc).__name__})"
            ) from None
        try:
            if not 200 <= resp.status <= 299:
                raise await _error(resp)
            yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ExecutorUnavailable(
                f"lost the Kubernetes API at {self.host} ({type(exc).__name__})"
            ) from None
        finally:
            resp.release()


async def _error(resp: aiohttp.ClientResponse) -> KubeError:
    """The API's Status object of an error answer, as a KubeError."""
    reason, message = resp.reason or "", ""
    try:
        status = json.loads(await resp.read())
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or "")[:500]
    except (ValueError, AttributeError, aiohttp.ClientError):
        pass
    return KubeError(resp.status, reason, message)


__all__ = ["KubeClient", "KubeError"]
