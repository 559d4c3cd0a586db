"""Runs: their list, one run, outputs, actions (execute, cancel), logs, and the live streams.

The streams (server streaming) leave what to send and when to end to the service; reads go
through :meth:`~porter_bundle.api.servicers.base.Calls.read`, so a stream never holds a
thread. Client cancellation cancels the call's task, which unsubscribes on its way out.
"""

from __future__ import annotations

from google.protobuf import json_format

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import Run
from porter_bundle.api.errors import mapped
from porter_bundle.api.servicers.base import Backend, Ctx, Servicer, page_bytes
from porter_bundle.api.wire import EncodingCache, list_response
from porter_bundle.auth import authz
from porter_bundle.service.actions import ActionRequest
from porter_bundle.service.streams import Heartbeat, LogData
from porter_bundle.service.visibility import check_run_by_id


class RunServicer(Servicer):
    """The run, action, log and stream RPCs of porter.bundle.v1.PorterBundle."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self._stream_timing = backend.stream_timing
        self._log_chunks = EncodingCache()

    # --- runs and outputs ----------------------------------------------------------

    @mapped
    async def ListInstallationRuns(
        self, request: pb.ListInstallationRunsRequest, context: Ctx
    ) -> bytes:
        page = await self._read(
            self._s.runs.list,
            request.namespace,
            request.name,
            page_size=request.page_size,
            page_token=request.page_token,
            skip=request.skip,
        )
        return page_bytes(page)

    @mapped
    async def GetInstallationRun(
        self, request: pb.GetInstallationRunRequest, context: Ctx
    ) -> pb.GetInstallationRunResponse:
        run = await self._read(
            self._reveals.run,
            request.namespace,
            request.name,
            request.run_id,
            reveal=request.reveal_sensitive,
            caller=self.caller("GetInstallationRun"),
        )
        return pb.GetInstallationRunResponse(run=run)

    @mapped
    async def ListInstallationRunOutputs(
        self, request: pb.ListInstallationRunOutputsRequest, context: Ctx
    ) -> bytes:
        found = await self._read(
            self._reveals.run_outputs,
            request.namespace,
            request.name,
            request.run_id,
            any_result=request.any_result,
            reveal=request.reveal_sensitive,
            caller=self.caller("ListInstallationRunOutputs"),
        )
        return list_response(found.docs, found.run_id, found.run_state)

    # --- actions and logs ------------------------------------------------------------

    @mapped
    async def ExecuteAction(
        self, request: pb.ExecuteActionRequest, context: Ctx
    ) -> pb.ExecuteActionResponse:
        run = await self._s.actions.execute(
            ActionRequest(
                namespace=request.namespace,
                name=request.name,
                action=request.action,
                overrides=json_format.MessageToDict(request.parameters),
                parameter_sets=list(request.parameter_sets),
                credential_sets=list(request.credential_sets),
                force=request.force,
                request_id=request.request_id,
            )
        )
        return pb.ExecuteActionResponse(run=run)

    @mapped
    async def CancelRun(self, request: pb.CancelRunRequest, context: Ctx) -> pb.CancelRunResponse:
        run = await self._s.actions.cancel(request.namespace, request.name, request.run_id)
        return pb.CancelRunResponse(run=run)

    @mapped
    async def GetInstallationRunLogs(
        self, request: pb.GetInstallationRunLogsRequest, context: Ctx
    ) -> pb.GetInstallationRunLogsResponse:
        run, logs = await self._read(
            self._s.actions.logs, request.namespace, request.name, request.run_id
        )
        return pb.GetInstallationRunLogsResponse(
            logs=logs.decode(errors="replace"), run_id=run.id, run_state=run.state
        )

    # --- live runs and logs (server streams) -----------------------------------------

    @mapped
    async def WatchInstallationRuns(
        self, request: pb.WatchInstallationRunsRequest, context: Ctx
    ) -> None:
        async def send(item: Run | Heartbeat) -> None:
            if isinstance(item, Heartbeat):
                await context.write(pb.WatchInstallationRunsResponse(heartbeat=_heartbeat(item)))
            else:
                await context.write(pb.WatchInstallationRunsResponse(run=item))

        await self._check_run_by_id(request)
        await self._s.streams.watch_runs(
            request.namespace,
            request.name,
            request.run_id,
            read=self._read,
            emit=send,
            timing=self._stream_timing,
        )

    @mapped
    async def StreamRunLogs(self, request: pb.StreamRunLogsRequest, context: Ctx) -> None:
        async def send(item: Run | LogData | Heartbeat) -> None:
            if isinstance(item, LogData):
                # The log is append-only: (offset, bytes) is the same message for every
                # follower, so it is encoded once (the bytes object is shared, so is its hash).
                encoded = self._log_chunks.get(
                    (item.offset, item.data),
                    lambda: pb.StreamRunLogsResponse(
                        chunk=pb.RunLogChunk(offset=item.offset, data=item.data)
                    ),
                )
                await context.write(encoded)
            elif isinstance(item, Heartbeat):
                await context.write(pb.StreamRunLogsResponse(heartbeat=_heartbeat(item)))
            else:
                await context.write(pb.StreamRunLogsResponse(run=item))

        await self._check_run_by_id(request)
        await self._s.streams.run_logs(
            request.namespace,
            request.name,
            request.run_id,
            request.offset,
            request.follow,
            read=self._read,
            emit=send,
            timing=self._stream_timing,
        )

    async def _check_run_by_id(
        self, request: pb.WatchInstallationRunsRequest | pb.StreamRunLogsRequest
    ) -> None:
        await check_run_by_id(
            self._s.runs,
            request.namespace,
            request.name,
            request.run_id,
            authz.current(),
            read=self._read,
        )


def _heartbeat(item: Heartbeat) -> pb.StreamHeartbeat:
    beat = pb.StreamHeartbeat()
    beat.time.FromDatetime(item.time)
    return beat
