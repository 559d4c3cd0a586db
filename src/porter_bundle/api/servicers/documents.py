"""Porter documents: Apply* (create or update from a document) and Export*."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle.api.errors import mapped
from porter_bundle.api.servicers.base import Ctx, Servicer
from porter_bundle.auth import authz
from porter_bundle.auth.roles import OPERATOR
from porter_bundle.documents.mapping import Format, to_value
from porter_bundle.service.documents import CREATED, UNCHANGED, UPDATED, SetApplied
from porter_bundle.service.reconcile import Change

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


class DocumentServicer(Servicer):
    """The Apply* and Export* RPCs of porter.bundle.v1.PorterBundle."""

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
            request_id=request.request_id,
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
        done = await self._apply_set(self._s.documents.apply_credential_set, request)
        return pb.ApplyCredentialSetResponse(credential_set=done.resource, **_applied(done))

    @mapped
    async def ApplyParameterSet(
        self, request: pb.ApplyParameterSetRequest, context: Ctx
    ) -> pb.ApplyParameterSetResponse:
        done = await self._apply_set(self._s.documents.apply_parameter_set, request)
        return pb.ApplyParameterSetResponse(parameter_set=done.resource, **_applied(done))

    async def _apply_set(self, apply: Callable[..., SetApplied], request: Any) -> SetApplied:
        return await self._run(apply, request.document, dry_run=request.dry_run)

    @mapped
    async def ExportInstallation(
        self, request: pb.ExportInstallationRequest, context: Ctx
    ) -> pb.ExportInstallationResponse:
        exported = await self._read(
            self._reveals.export_installation,
            request.namespace,
            request.name,
            _format(request.format),
            reveal=request.reveal_sensitive,
            caller=self.caller("ExportInstallation"),
        )
        return pb.ExportInstallationResponse(
            document=exported.document, sensitive_parameters=exported.sensitive_parameters
        )

    @mapped
    async def ExportCredentialSet(
        self, request: pb.ExportCredentialSetRequest, context: Ctx
    ) -> pb.ExportCredentialSetResponse:
        text = await self._read(
            self._reveals.export_credential_set,
            request.namespace,
            request.name,
            _format(request.format),
            reveal=request.reveal_sensitive,
            caller=self.caller("ExportCredentialSet"),
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


def _applied(done: SetApplied) -> dict[str, Any]:
    """The fields every Apply<Set> response has besides the set."""
    return {
        "outcome": _OUTCOMES[done.outcome],
        "changed_fields": done.changed_fields,
        "warnings": done.warnings,
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
