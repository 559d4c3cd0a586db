"""The PorterBundle servicer: requests in, service calls, responses out. No rules, no SQL.

Service calls are blocking (database I/O), so each runs on the server's worker pool
while the event loop keeps serving other calls.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import Output, Run
from porter_bundle.api.errors import mapped
from porter_bundle.api.wire import EncodingCache, list_response
from porter_bundle.auth import authz
from porter_bundle.auth.audit import AuditLog, resource_name
from porter_bundle.auth.roles import OPERATOR, VIEWER
from porter_bundle.documents.mapping import Format, to_value
from porter_bundle.errors import Violations
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionRequest
from porter_bundle.service.documents import CREATED, UNCHANGED, UPDATED
from porter_bundle.service.paging import PageResult
from porter_bundle.service.reconcile import Change
from porter_bundle.service.runs import run_id_not_found
from porter_bundle.service.streams import Heartbeat, LogData, StreamTiming

T = TypeVar("T")
SERVICE = "porter.bundle.v1.PorterBundle"
Ctx = grpc.aio.ServicerContext[Any, Any]


def _page_bytes(page: PageResult) -> bytes:
    return list_response(page.docs, page.next_page_token, page.total_size)


def _require(request: Any, field: str) -> None:
    if not request.HasField(field):
        v = Violations()
        v.add(field, f"{field} is required")
        v.raise_if_any()


class PorterBundleServicer:
    """Implements porter.bundle.v1.PorterBundle over :class:`~porter_bundle.service.Services`."""

    def __init__(
        self,
        services: Services,
        executor: Executor,
        *,
        inline_reads: bool = False,
        stream_timing: StreamTiming | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._s = services
        self._audit = audit or AuditLog()
        self._executor = executor
        self._inline_reads = inline_reads
        self._stream_timing = stream_timing or StreamTiming()
        self._log_chunks = EncodingCache()

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking service call on the worker pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read-only service call. On a local SQLite file a read takes a fraction of a
        millisecond and never waits for writers (WAL), so it runs on the event loop: the
        hop to a worker thread, and the GIL contention it brings, cost more than the read."""
        if self._inline_reads:
            return fn(*args, **kwargs)
        return await self._run(fn, *args, **kwargs)

    def _reveal(self, request: Any, namespace: str) -> bool:
        """Whether the request asks to reveal sensitive values; PERMISSION_DENIED when it does
        and the caller may not (checked before anything is looked up)."""
        if not request.reveal_sensitive:
            return False
        authz.current().require_reveal(namespace)
        return True

    async def _check_run_by_id(self, request: Any) -> None:
        """A run addressed by ID alone in a namespace the caller may not see is NOT_FOUND, as
        a missing run is (the namespace was not known before the run was found)."""
        access = authz.current()
        if not access.authenticated or request.name or request.namespace:
            return
        run = await self._read(self._s.runs.locate, "", "", request.run_id)
        if not access.may(VIEWER, run.namespace):
            raise run_id_not_found(run.id)

    def _audit_reveal(self, method: str, resource: str, namespace: str) -> None:
        self._audit.reveal(
            principal=authz.current().principal.name,
            method=f"/{SERVICE}/{method}",
            resource=resource,
            namespace=namespace,
        )

    # --- installations -------------------------------------------------------------

    @mapped
    async def ListInstallations(self, request: pb.ListInstallationsRequest, context: Ctx) -> bytes:
        page = await self._read(
            self._s.installations.list,
            namespace=request.namespace,
            all_namespaces=request.all_namespaces,
            name=request.name,
            labels=dict(request.labels),
            page_size=request.page_size,
            page_token=request.page_token,
            skip=request.skip,
            visible=authz.current().visible,
        )
        return _page_bytes(page)

    @mapped
    async def GetInstallation(
        self, request: pb.GetInstallationRequest, context: Ctx
    ) -> pb.GetInstallationResponse:
        reveal = self._reveal(request, request.namespace)
        inst = await self._read(
            self._s.installations.get, request.namespace, request.name, reveal=reveal
        )
        if reveal:
            self._audit_reveal(
                "GetInstallation",
                resource_name("installations", request.namespace, request.name),
                request.namespace,
            )
        return pb.GetInstallationResponse(installation=inst)

    @mapped
    async def CreateInstallation(
        self, request: pb.CreateInstallationRequest, context: Ctx
    ) -> pb.CreateInstallationResponse:
        _require(request, "installation")
        inst = await self._run(self._s.installations.create, request.installation)
        return pb.CreateInstallationResponse(installation=inst)

    @mapped
    async def UpdateInstallation(
        self, request: pb.UpdateInstallationRequest, context: Ctx
    ) -> pb.UpdateInstallationResponse:
        _require(request, "installation")
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
        return _page_bytes(page)

    @mapped
    async def GetInstallationRun(
        self, request: pb.GetInstallationRunRequest, context: Ctx
    ) -> pb.GetInstallationRunResponse:
        reveal = self._reveal(request, request.namespace)
        run = await self._read(self._s.runs.get, request.namespace, request.name, request.run_id)
        if reveal and run.sensitive_parameters:
            values = await self._read(self._s.runs.run_parameters, run.id)
            hidden = {k: values[k] for k in run.sensitive_parameters if k in values}
            run.parameters.update(hidden)
            resource = resource_name(
                "installations", run.namespace, run.installation, "runs", run.id
            )
            self._audit_reveal("GetInstallationRun", resource, request.namespace)
        return pb.GetInstallationRunResponse(run=run)

    @mapped
    async def ListInstallationRunOutputs(
        self, request: pb.ListInstallationRunOutputsRequest, context: Ctx
    ) -> bytes:
        reveal = self._reveal(request, request.namespace)
        found = await self._read(
            self._s.runs.outputs,
            request.namespace,
            request.name,
            request.run_id,
            any_result=request.any_result,
        )
        docs = found.docs
        if reveal:
            outputs = [Output.FromString(d) for d in docs]
            if any(o.sensitive for o in outputs):
                values = await self._read(self._s.runs.revealed_outputs, found.run_id)
                for out in outputs:
                    if out.sensitive and out.name in values:
                        json_format.ParseDict(values[out.name], out.value)
                docs = [o.SerializeToString() for o in outputs]
                resource = resource_name(
                    "installations",
                    request.namespace,
                    request.name,
                    "runs",
                    found.run_id,
                    "outputs",
                )
                self._audit_reveal("ListInstallationRunOutputs", resource, request.namespace)
        return list_response(docs, found.run_id, found.run_state)

    # --- actions ----------------------------------------------------------------------

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

    # --- credential sets -----------------------------------------------------------

    @mapped
    async def ListCredentialSets(
        self, request: pb.ListCredentialSetsRequest, context: Ctx
    ) -> bytes:
        return _page_bytes(await self._read(self._s.credential_sets.list, **_list_args(request)))

    @mapped
    async def GetCredentialSet(
        self, request: pb.GetCredentialSetRequest, context: Ctx
    ) -> pb.GetCredentialSetResponse:
        if self._reveal(request, request.namespace):
            found = await self._read(
                self._s.credential_sets.get_revealed, request.namespace, request.name
            )
            self._audit_reveal(
                "GetCredentialSet",
                resource_name("credentialsets", request.namespace, request.name),
                request.namespace,
            )
        else:
            found = await self._read(self._s.credential_sets.get, request.namespace, request.name)
        return pb.GetCredentialSetResponse(credential_set=found)

    @mapped
    async def CreateCredentialSet(
        self, request: pb.CreateCredentialSetRequest, context: Ctx
    ) -> pb.CreateCredentialSetResponse:
        _require(request, "credential_set")
        created = await self._run(self._s.credential_sets.create, request.credential_set)
        return pb.CreateCredentialSetResponse(credential_set=created)

    @mapped
    async def UpdateCredentialSet(
        self, request: pb.UpdateCredentialSetRequest, context: Ctx
    ) -> pb.UpdateCredentialSetResponse:
        _require(request, "credential_set")
        updated = await self._run(
            self._s.credential_sets.update, request.credential_set, list(request.update_mask.paths)
        )
        return pb.UpdateCredentialSetResponse(credential_set=updated)

    @mapped
    async def DeleteCredentialSet(
        self, request: pb.DeleteCredentialSetRequest, context: Ctx
    ) -> pb.DeleteCredentialSetResponse:
        await self._run(
            self._s.credential_sets.delete,
            request.namespace,
            request.name,
            force=request.force,
            etag=request.etag,
        )
        return pb.DeleteCredentialSetResponse()

    # --- parameter sets ------------------------------------------------------------

    @mapped
    async def ListParameterSets(self, request: pb.ListParameterSetsRequest, context: Ctx) -> bytes:
        return _page_bytes(await self._read(self._s.parameter_sets.list, **_list_args(request)))

    @mapped
    async def GetParameterSet(
        self, request: pb.GetParameterSetRequest, context: Ctx
    ) -> pb.GetParameterSetResponse:
        found = await self._read(self._s.parameter_sets.get, request.namespace, request.name)
        return pb.GetParameterSetResponse(parameter_set=found)

    @mapped
    async def CreateParameterSet(
        self, request: pb.CreateParameterSetRequest, context: Ctx
    ) -> pb.CreateParameterSetResponse:
        _require(request, "parameter_set")
        created = await self._run(self._s.parameter_sets.create, request.parameter_set)
        return pb.CreateParameterSetResponse(parameter_set=created)

    @mapped
    async def UpdateParameterSet(
        self, request: pb.UpdateParameterSetRequest, context: Ctx
    ) -> pb.UpdateParameterSetResponse:
        _require(request, "parameter_set")
        updated = await self._run(
            self._s.parameter_sets.update, request.parameter_set, list(request.update_mask.paths)
        )
        return pb.UpdateParameterSetResponse(parameter_set=updated)

    @mapped
    async def DeleteParameterSet(
        self, request: pb.DeleteParameterSetRequest, context: Ctx
    ) -> pb.DeleteParameterSetResponse:
        await self._run(
            self._s.parameter_sets.delete,
            request.namespace,
            request.name,
            force=request.force,
            etag=request.etag,
        )
        return pb.DeleteParameterSetResponse()

    # --- bundles -------------------------------------------------------------------

    @mapped
    async def ListBundles(self, request: pb.ListBundlesRequest, context: Ctx) -> bytes:
        page = await self._read(
            self._s.bundles.list,
            name=request.name,
            page_size=request.page_size,
            page_token=request.page_token,
            skip=request.skip,
        )
        return _page_bytes(page)

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

    # --- live runs and logs (server streams) -----------------------------------------
    # The service decides what to send and when to end; reads go through `_read`, so a
    # stream never holds a thread. Client cancellation cancels the call's task, which
    # unsubscribes on its way out.

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

    # --- Porter documents ------------------------------------------------------------

    @mapped
    async def ApplyInstallation(
        self, request: pb.ApplyInstallationRequest, context: Ctx
    ) -> pb.ApplyInstallationResponse:
        access = authz.current()
        done = await self._s.documents.apply_installation(
            request.document,
            dry_run=request.dry_run,
            force=request.force,
            authorize_run=lambda namespace: access.require(OPERATOR, namespace),
        )
        response = pb.ApplyInstallationResponse(
            installation=done.installation,
            outcome=_OUTCOMES[done.outcome],
            changed_fields=done.changed_fields,
            decision=_DECISIONS[done.decision.action],
            reason=done.decision.reason,
            changes=[_change(c) for c in done.decision.changes],
            warnings=done.warnings,
        )
        if done.run is not None:
            response.run.CopyFrom(done.run)
        return response

    @mapped
    async def ApplyCredentialSet(
        self, request: pb.ApplyCredentialSetRequest, context: Ctx
    ) -> pb.ApplyCredentialSetResponse:
        done = await self._run(
            self._s.documents.apply_credential_set, request.document, dry_run=request.dry_run
        )
        return pb.ApplyCredentialSetResponse(
            credential_set=done.resource,
            outcome=_OUTCOMES[done.outcome],
            changed_fields=done.changed_fields,
            warnings=done.warnings,
        )

    @mapped
    async def ApplyParameterSet(
        self, request: pb.ApplyParameterSetRequest, context: Ctx
    ) -> pb.ApplyParameterSetResponse:
        done = await self._run(
            self._s.documents.apply_parameter_set, request.document, dry_run=request.dry_run
        )
        return pb.ApplyParameterSetResponse(
            parameter_set=done.resource,
            outcome=_OUTCOMES[done.outcome],
            changed_fields=done.changed_fields,
            warnings=done.warnings,
        )

    @mapped
    async def ExportInstallation(
        self, request: pb.ExportInstallationRequest, context: Ctx
    ) -> pb.ExportInstallationResponse:
        reveal = self._reveal(request, request.namespace)
        exported = await self._read(
            self._s.documents.export_installation,
            request.namespace,
            request.name,
            _format(request.format),
            reveal=reveal,
        )
        if reveal:
            self._audit_reveal(
                "ExportInstallation",
                resource_name("installations", request.namespace, request.name),
                request.namespace,
            )
        return pb.ExportInstallationResponse(
            document=exported.document, sensitive_parameters=exported.sensitive_parameters
        )

    @mapped
    async def ExportCredentialSet(
        self, request: pb.ExportCredentialSetRequest, context: Ctx
    ) -> pb.ExportCredentialSetResponse:
        reveal = self._reveal(request, request.namespace)
        text = await self._read(
            self._s.documents.export_credential_set,
            request.namespace,
            request.name,
            _format(request.format),
            reveal=reveal,
        )
        if reveal:
            self._audit_reveal(
                "ExportCredentialSet",
                resource_name("credentialsets", request.namespace, request.name),
                request.namespace,
            )
        return pb.ExportCredentialSetResponse(document=text)

    @mapped
    async def ExportParameterSet(
        self, request: pb.ExportParameterSetRequest, context: Ctx
    ) -> pb.ExportParameterSetResponse:
        text = await self._read(
            self._s.documents.export_parameter_set,
            request.namespace,
            request.name,
            _format(request.format),
        )
        return pb.ExportParameterSetResponse(document=text)


def _heartbeat(item: Heartbeat) -> pb.StreamHeartbeat:
    beat = pb.StreamHeartbeat()
    beat.time.FromDatetime(item.time)
    return beat


def _list_args(request: Any) -> dict[str, Any]:
    return {
        "namespace": request.namespace,
        "all_namespaces": request.all_namespaces,
        "name": request.name,
        "labels": dict(request.labels),
        "page_size": request.page_size,
        "page_token": request.page_token,
        "skip": request.skip,
        "visible": authz.current().visible,
    }


# --- Porter documents: wire values --------------------------------------------------------

_OUTCOMES = {
    CREATED: pb.APPLY_OUTCOME_CREATED,
    UPDATED: pb.APPLY_OUTCOME_UPDATED,
    UNCHANGED: pb.APPLY_OUTCOME_UNCHANGED,
}
_DECISIONS = {
    "": pb.APPLY_DECISION_NONE,
    "install": pb.APPLY_DECISION_INSTALL,
    "upgrade": pb.APPLY_DECISION_UPGRADE,
    "uninstall": pb.APPLY_DECISION_UNINSTALL,
}


def _format(value: int) -> Format:
    return "json" if value == pb.DOCUMENT_FORMAT_JSON else "yaml"


def _change(change: Change) -> pb.ApplyChange:
    out = pb.ApplyChange(field=change.field, sensitive=change.sensitive)
    if change.current is not None:
        out.current.CopyFrom(to_value(change.current))
    if change.desired is not None:
        out.desired.CopyFrom(to_value(change.desired))
    return out
