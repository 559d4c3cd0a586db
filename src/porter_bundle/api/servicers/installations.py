"""Installations: List, Get, Create, Update and Delete."""

from __future__ import annotations

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle.api.errors import mapped
from porter_bundle.api.servicers.base import Ctx, Servicer, list_args, page_bytes, require


class InstallationServicer(Servicer):
    """The installation RPCs of porter.bundle.v1.PorterBundle."""

    @mapped
    async def ListInstallations(self, request: pb.ListInstallationsRequest, context: Ctx) -> bytes:
        return page_bytes(await self._read(self._s.installations.list, **list_args(request)))

    @mapped
    async def GetInstallation(
        self, request: pb.GetInstallationRequest, context: Ctx
    ) -> pb.GetInstallationResponse:
        inst = await self._read(
            self._reveals.installation,
            request.namespace,
            request.name,
            reveal=request.reveal_sensitive,
            caller=self.caller("GetInstallation"),
        )
        return pb.GetInstallationResponse(installation=inst)

    @mapped
    async def CreateInstallation(
        self, request: pb.CreateInstallationRequest, context: Ctx
    ) -> pb.CreateInstallationResponse:
        require(request, "installation")
        inst = await self._run(self._s.installations.create, request.installation)
        return pb.CreateInstallationResponse(installation=inst)

    @mapped
    async def UpdateInstallation(
        self, request: pb.UpdateInstallationRequest, context: Ctx
    ) -> pb.UpdateInstallationResponse:
        require(request, "installation")
        inst = await self._run(
            self._s.installations.update, request.installation, list(request.update_mask.paths)
        )
        return pb.UpdateInstallationResponse(installation=inst)

    @mapped
    async def DeleteInstallation(
        self, request: pb.DeleteInstallationRequest, context: Ctx
    ) -> pb.DeleteInstallationResponse:
        await self._run(
            self._s.installations.delete,
            request.namespace,
            request.name,
            force=request.force,
            etag=request.etag,
        )
        return pb.DeleteInstallationResponse()
