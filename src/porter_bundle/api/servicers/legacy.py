"""The porter.v1alpha1.Porter servicer: Porter's legacy API, for the Porter Kubernetes operator.

Thin like the other servicers: requests in, service calls
(:class:`~porter_bundle.service.legacy.LegacyService`, and reveals through
:class:`~porter_bundle.service.reveal.RevealService`), responses out; errors go through
:func:`~porter_bundle.api.errors.mapped`, so a missing installation is NOT_FOUND with an
ErrorInfo instead of Porter's UNKNOWN.
"""

from __future__ import annotations

from typing import ClassVar

from installation.v1alpha1 import installation_pb2 as ipb
from porter.v1alpha1 import porter_pb2
from porter_bundle.api.errors import mapped
from porter_bundle.api.servicers.base import Ctx, Servicer
from porter_bundle.auth import authz

# Porter's legacy API (porter.v1alpha1.Porter), for the Porter operator, on the same port.
LEGACY_SERVICE_DESCRIPTOR = porter_pb2.DESCRIPTOR.services_by_name["Porter"]
LEGACY_SERVICE: str = LEGACY_SERVICE_DESCRIPTOR.full_name


class PorterLegacyServicer(Servicer):
    """Implements porter.v1alpha1.Porter over :class:`~porter_bundle.service.Services`."""

    service: ClassVar[str] = LEGACY_SERVICE

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
        found = await self._read(
            self._reveals.legacy_latest_outputs,
            request.namespace,
            request.name,
            caller=self.caller("ListInstallationLatestOutputs"),
        )
        return ipb.ListInstallationLatestOutputResponse(outputs=found)
