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
from porter_bundle.auth import authz
from porter_bundle.auth.audit import AuditLog, resource_name
from porter_bundle.auth.roles import SECRET_READER
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
        audit: AuditLog | None = None,
    ) -> None:
        self._s = services
        self._executor = executor
        self._reveal_sensitive = reveal_sensitive
        self._inline_reads = inline_reads
        self._audit = audit or AuditLog()

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read-only service call: inline on a local SQLite file, else on the worker pool."""
        if self._inline_reads:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def may_reveal_sensitive(self, namespace: str) -> bool:
        """Whether this caller gets sensitive output values of ``namespace`` in clear.

        With the server-wide setting (``--legacy-reveal-sensitive``, for a trusted in-cluster
        deployment where only the operator can reach the port) every caller does; when
        callers are authenticated, so does one holding secret-reader in the namespace.
        """
        if self._reveal_sensitive:
            return True
        access = authz.current()
        return access.authenticated and access.may(SECRET_READER, namespace)

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
            visible=authz.current().visible,
        )
        return ipb.ListInstallationsResponse(installation=found)

    @mapped
    async def ListInstallationLatestOutputs(
        self, request: ipb.ListInstallationLatestOutputRequest, context: Ctx
    ) -> ipb.ListInstallationLatestOutputResponse:
        reveal = self.may_reveal_sensitive(request.namespace)
        found = await self._read(
            self._s.legacy.latest_outputs,
            request.namespace,
            request.name,
            reveal_sensitive=reveal,
        )
        if reveal and any(v.sensitive for v in found):
            self._audit.reveal(
                principal=authz.current().principal.name,
                method="/porter.v1alpha1.Porter/ListInstallationLatestOutputs",
                resource=resource_name("installations", request.namespace, request.name, "outputs"),
                namespace=request.namespace,
            )
        return ipb.ListInstallationLatestOutputResponse(outputs=found)
