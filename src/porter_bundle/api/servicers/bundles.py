"""Bundles: List, Get, Create, Update, Delete and Pull (from an OCI registry)."""

from __future__ import annotations

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle.api.errors import mapped
from porter_bundle.api.servicers.base import Ctx, Servicer, page_bytes


class BundleServicer(Servicer):
    """The bundle RPCs of porter.bundle.v1.PorterBundle."""

    @mapped
    async def ListBundles(self, request: pb.ListBundlesRequest, context: Ctx) -> bytes:
        page = await self._read(
            self._s.bundles.list,
            name=request.name,
            page_size=request.page_size,
            page_token=request.page_token,
            skip=request.skip,
        )
        return page_bytes(page)

    @mapped
    async def GetBundle(self, request: pb.GetBundleRequest, context: Ctx) -> pb.GetBundleResponse:
        return pb.GetBundleResponse(bundle=await self._read(self._s.bundles.get, request.reference))

    @mapped
    async def CreateBundle(
        self, request: pb.CreateBundleRequest, context: Ctx
    ) -> pb.CreateBundleResponse:
        bundle = await self._run(self._s.bundles.create, request.reference, request.bundle_json)
        return pb.CreateBundleResponse(bundle=bundle)

    @mapped
    async def UpdateBundle(
        self, request: pb.UpdateBundleRequest, context: Ctx
    ) -> pb.UpdateBundleResponse:
        bundle = await self._run(
            self._s.bundle_updates.update,
            request.reference,
            request.bundle_json,
            etag=request.etag,
        )
        return pb.UpdateBundleResponse(bundle=bundle)

    @mapped
    async def DeleteBundle(
        self, request: pb.DeleteBundleRequest, context: Ctx
    ) -> pb.DeleteBundleResponse:
        await self._run(self._s.bundles.delete, request.reference)
        return pb.DeleteBundleResponse()

    @mapped
    async def PullBundle(
        self, request: pb.PullBundleRequest, context: Ctx
    ) -> pb.PullBundleResponse:
        # Registry I/O is blocking: on the worker pool, like every write.
        bundle = await self._run(self._s.bundles.pull, request.reference)
        return pb.PullBundleResponse(bundle=bundle)
