"""The porter.v1alpha1.Porter servicer: Porter's legacy API, for the Porter Kubernetes operator.

Thin like :mod:`porter_bundle.api.servicer`: requests in, service calls
(:class:`~porter_bundle.service.legacy.LegacyService`), responses out; errors go through
:func:`~porter_bundle.api.errors.mapped`, so a missing installation is NOT_FOUND with an
ErrorInfo instead of Porter's UNKNOWN.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc

from installation.v1alpha1 import installation_pb2 as ipb
from porter_bundle.api.errors import mapped
from porter_bundle.service import Services

T = TypeVar("T")
Ctx = grpc.aio.ServicerContext[Any, Any]


class PorterLegacyServicer:
    """Implements porter.v1alpha1.Porter over :class:`~porter_bundle.service.Services`."""

    def __init__(
        self,
        services: Services,
        executor: Executor,
        *,
        reveal_sensitive: bool = False,
        inline_reads: bool = False,
    ) -> None:
        self._s = services
        self._executor = executor
        self._reveal_sensitive = reveal_sensitive
        self._inline_reads = inline_reads

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read-only service call: inline on a local SQLite file, else on the worker pool."""
        if self._inline_reads:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def may_reveal_sensitive(self, context: Ctx) -> bool:
        """Whether this caller gets sensitive output values in clear.

        Today a server-wide setting (``--legacy-reveal-sensitive``, for a trusted in-cluster
        deployment where only the operator can reach the port). Hook for per-caller
        permissions: once callers are authenticated, answer from ``context`` (e.g. a
        "read secrets" grant of the caller's identity) here, and nowhere else.
        """
        del context
        return self._reveal_sensitive

    @mapped
    async def ListInstallations(
        self, request: ipb.ListInstallationsRequest, context: Ctx
    ) -> ipb.ListInstallationsResponse:
        found = await self._read(
            self._s.legacy.list_installations,
            name=request.name,
            namespace=request.namespace,  # unset reads as "": the global namespace
            all_namespaces=request.allNamespaces,
            labels=dict(request.labels),
            limit=request.limit,
            skip=request.skip,
        )
        return ipb.ListInstallationsResponse(installation=found)

    @mapped
    async def ListInstallationLatestOutputs(
        self, request: ipb.ListInstallationLatestOutputRequest, context: Ctx
    ) -> ipb.ListInstallationLatestOutputResponse:
        found = await self._read(
            self._s.legacy.latest_outputs,
            request.namespace,
            request.name,
            reveal_sensitive=self.may_reveal_sensitive(context),
        )
        return ipb.ListInstallationLatestOutputResponse(outputs=found)
