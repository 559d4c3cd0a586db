"""An installation's CNAB status (CNAB spec section 804, ``io.cnab.status``).

When the installation's bundle defines the well-known ``io.cnab.status`` custom action, the
status is the ``status`` output of its latest successful run (a status document, valid against
the spec's status.schema.json); ``refresh`` runs it first and waits for it. Otherwise, or before
it has succeeded once, the status comes from the latest result of the installation's last claim
that is not a status run: succeeded is "Ready" ("Uninstalled" after an uninstall), pending and
running are "Pending", failed and canceled "Failed".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from porter.bundle.v1.claim_pb2 import (
    CNAB_STATUS_SOURCE_CLAIM_RESULT,
    CNAB_STATUS_SOURCE_NONE,
    CNAB_STATUS_SOURCE_STATUS_ACTION,
    CnabStatus,
)
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Output,
)
from porter_bundle.bundles import cnab
from porter_bundle.errors import FailedPrecondition
from porter_bundle.service.actions import ActionRequest, ActionService
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.claims import ClaimService
from porter_bundle.service.common import display_address
from porter_bundle.service.installations import InstallationService, bundle_ref_of
from porter_bundle.service.runs import RunService

STATUS_ACTION = "io.cnab.status"
"""The well-known custom action that reports a bundle's status (CNAB 804)."""
STATUS_OUTPUT = "status"
"""The output the status action writes its status document to (CNAB 804)."""

_STATUS_OF_STATE = {
    RUN_STATE_SUCCEEDED: "Ready",
    RUN_STATE_PENDING: "Pending",
    RUN_STATE_RUNNING: "Pending",
    RUN_STATE_FAILED: "Failed",
    RUN_STATE_CANCELED: "Failed",
}


class InstallationStatusService:
    """GetInstallationStatus: from the status action's output, else from the last claim result."""

    def __init__(
        self,
        *,
        installations: InstallationService,
        bundles: BundleService,
        runs: RunService,
        claims: ClaimService,
        actions: ActionService,
        blocking: Blocking,
    ) -> None:
        self._installations = installations
        self._bundles = bundles
        self._runs = runs
        self._claims = claims
        self._actions = actions
        self._blocking = blocking

    async def get(
        self,
        namespace: str,
        name: str,
        *,
        refresh: bool = False,
        authorize_run: Callable[[str], None] = lambda namespace: None,
    ) -> CnabStatus:
        """The installation's status; with ``refresh`` (``authorize_run`` checks the caller may
        run actions in the namespace) the status action runs first."""
        if refresh:
            authorize_run(namespace)
        inst = await self._blocking.run(self._installations.get, namespace, name)
        defined = await self._blocking.run(self._defines_status_action, inst)
        if refresh:
            if not defined:
                raise FailedPrecondition(
                    f"the bundle of installation {display_address(namespace, name)} defines no "
                    f"{STATUS_ACTION} action",
                    reason="STATUS_ACTION_UNDEFINED",
                    metadata={"namespace": namespace, "name": name},
                )
            run = await self._actions.execute(ActionRequest(namespace, name, STATUS_ACTION))
            ended = await self._actions.wait_ended(run.id)
            if ended.state != RUN_STATE_SUCCEEDED:
                raise FailedPrecondition(
                    f"the {STATUS_ACTION} run {ended.id} did not succeed: {ended.message}",
                    reason="STATUS_ACTION_FAILED",
                    metadata={"run_id": ended.id},
                )
        return await self._blocking.run(self._recorded, namespace, name, defined)

    # --- internals ---------------------------------------------------------------

    def _defines_status_action(self, inst: Any) -> bool:
        """Whether the installation's bundle, as this server has it, defines the status action
        (never reaches a registry: a status read must not wait on one)."""
        found = self._bundles.cached(bundle_ref_of(inst))
        return found is not None and STATUS_ACTION in cnab.custom_actions(found.document)

    def _recorded(self, namespace: str, name: str, defined: bool) -> CnabStatus:
        if defined:
            found = self._claims.latest(
                namespace, name, action=STATUS_ACTION, state=RUN_STATE_SUCCEEDED
            )
            if found is not None:
                claim, result = found
                document = self._status_output(namespace, name, claim.id)
                return _report(
                    document, CNAB_STATUS_SOURCE_STATUS_ACTION, claim.id, result, defined
                )
        found = self._claims.latest(namespace, name, exclude_action=STATUS_ACTION)
        if found is None:
            document = {"status": "Unknown", "message": "the installation has no claim yet"}
            return CnabStatus(
                status="Unknown",
                message=document["message"],
                status_json=json.dumps(document),
                source=CNAB_STATUS_SOURCE_NONE,
                status_action_defined=defined,
            )
        claim, result = found
        status = _STATUS_OF_STATE.get(result.status, "Unknown")
        if result.status == RUN_STATE_SUCCEEDED and claim.action == "uninstall":
            status = "Uninstalled"
        document = {"status": status}
        detail = result.message or f"{claim.action} {json.loads(result.result_json)['status']}"
        document["message"] = detail
        return _report(document, CNAB_STATUS_SOURCE_CLAIM_RESULT, claim.id, result, defined)

    def _status_output(self, namespace: str, name: str, run_id: str) -> dict[str, Any]:
        """The status document the status run wrote (its ``status`` output)."""
        outputs = self._runs.outputs(namespace, name, run_id, any_result=False)
        for raw in outputs.docs:
            out = Output.FromString(raw)
            if out.name != STATUS_OUTPUT:
                continue
            if out.sensitive:
                raise _bad_output(run_id, f"its {STATUS_OUTPUT} output is sensitive (writeOnly)")
            value = json_format.MessageToDict(out.value)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise _bad_output(run_id, f"its {STATUS_OUTPUT} output is not JSON") from None
            return _checked_document(run_id, value)
        raise _bad_output(run_id, f"it wrote no {STATUS_OUTPUT} output")


def _checked_document(run_id: str, value: Any) -> dict[str, Any]:
    """A status document as status.schema.json describes it (status and message strings,
    components an object of such documents), or FAILED_PRECONDITION naming what is wrong."""

    def check(doc: Any, where: str) -> None:
        if not isinstance(doc, dict):
            raise _bad_output(run_id, f"{where} is not a JSON object")
        for key in ("status", "message"):
            if key in doc and not isinstance(doc[key], str):
                raise _bad_output(run_id, f"{where}.{key} is not a string")
        components = doc.get("components", {})
        if not isinstance(components, dict):
            raise _bad_output(run_id, f"{where}.components is not an object")
        for component, sub in components.items():
            check(sub, f"{where}.components.{component}")

    check(value, STATUS_OUTPUT)
    checked: dict[str, Any] = value
    return checked


def _bad_output(run_id: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the {STATUS_ACTION} run {run_id} gave no status document: {why}",
        reason="STATUS_OUTPUT_INVALID",
        metadata={"run_id": run_id},
    )


def _report(
    document: dict[str, Any], source: int, claim_id: str, result: Any, defined: bool
) -> CnabStatus:
    return CnabStatus(
        status=str(document.get("status", "")),
        message=str(document.get("message", "")),
        status_json=json.dumps(document),
        source=source,  # type: ignore[arg-type]
        claim_id=claim_id,
        time=result.create_time,
        status_action_defined=defined,
    )


__all__ = ["STATUS_ACTION", "STATUS_OUTPUT", "InstallationStatusService"]
