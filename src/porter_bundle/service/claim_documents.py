"""CNAB claim and claim result documents (CNAB Claims 1.0.0), built from runs.

A run is a claim (same ID); each state a run reaches is a claim result. The documents are
the spec's JSON: a claim validates against ``claim.schema.json``, a result against
``claim-result.schema.json``. Sensitive parameter values are never in a stored or served
claim: only the container's ``/cnab/claim.json`` carries every value the run uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Output,
    Run,
)
from porter_bundle.bundles import cnab

CLAIMS_VERSION = "1.0.0-DRAFT+b5ed2f3"
CUSTOM_KEY = "sh.porter-bundle"
"""Our key under a claim's ``custom`` (the spec reserves ``custom`` for runtimes' extensions)."""

STATUS_NAMES: Mapping[int, str] = {
    RUN_STATE_PENDING: "pending",
    RUN_STATE_RUNNING: "running",
    RUN_STATE_SUCCEEDED: "succeeded",
    RUN_STATE_FAILED: "failed",
    RUN_STATE_CANCELED: "canceled",
}
"""The claim result status of each run state (anything else is "unknown")."""
STATES_BY_STATUS: Mapping[str, int] = {v: k for k, v in STATUS_NAMES.items()}


def status_name(state: int) -> str:
    """The CNAB claim result status of a run state."""
    return STATUS_NAMES.get(state, "unknown")


def iso(ts: Timestamp | datetime) -> str:
    """An ISO-8601 extended format time in UTC ("...Z"), as the spec's documents write it."""
    dt = ts.ToDatetime(tzinfo=UTC) if isinstance(ts, Timestamp) else ts.astimezone(UTC)
    return dt.isoformat().replace("+00:00", "Z")


def modifies(run: Run, bundle: Mapping[str, Any]) -> bool:
    """Whether the run's action modifies the installation (gives it a new revision): the
    built-in actions do, a custom action when its definition says ``modifies`` (CNAB 101)."""
    if run.action in (ACTION_INSTALL, ACTION_UPGRADE, ACTION_UNINSTALL):
        return True
    if run.action == ACTION_INVOKE:
        definition = cnab.custom_actions(dict(bundle)).get(run.custom_action, {})
        return bool(definition.get("modifies", False))
    return False


def claim_document(
    run: Run,
    action: str,
    bundle: Mapping[str, Any],
    *,
    revision: str,
    parameters: Mapping[str, Any] | None = None,
    withheld: Sequence[str] = (),
) -> dict[str, Any]:
    """The claim of ``run``: ``parameters`` are its values (None: the run's public ones, as
    recorded); ``withheld`` names the sensitive ones left out, listed under ``custom``."""
    public = json_format.MessageToDict(run.parameters) if parameters is None else parameters
    doc: dict[str, Any] = {
        "schemaVersion": CLAIMS_VERSION,
        "id": run.id,
        "installation": run.installation,
        "namespace": run.namespace,
        "revision": revision,
        "created": iso(run.create_time),
        "action": action,
        "bundle": dict(bundle),
        "parameters": dict(public),
    }
    if run.bundle_reference:
        doc["bundleReference"] = run.bundle_reference
    if withheld:
        doc["custom"] = {CUSTOM_KEY: {"sensitiveParameters": sorted(withheld)}}
    return doc


def placeholder_bundle(run: Run) -> dict[str, Any]:
    """The bundle of a claim whose bundle.json is no longer known (a run recorded before
    claims were stored, whose bundle was deleted since): what the run says of it."""
    name = run.bundle_reference.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return {
        "schemaVersion": "v1.0.0",
        "name": name or "unknown",
        "version": run.bundle_version or "0.0.0",
        "invocationImages": [],
    }


def result_document(
    run: Run, result_id: str, created: datetime, outputs: Sequence[Output] = ()
) -> dict[str, Any]:
    """The claim result of ``run`` in its current state (outputs: digests only)."""
    doc: dict[str, Any] = {
        "claimId": run.id,
        "id": result_id,
        "created": iso(created),
        "message": run.message,
        "status": status_name(run.state),
    }
    if outputs:
        doc["outputs"] = {o.name: {"contentDigest": o.digest} for o in outputs}
    return doc


__all__ = [
    "CLAIMS_VERSION",
    "CUSTOM_KEY",
    "STATES_BY_STATUS",
    "STATUS_NAMES",
    "claim_document",
    "iso",
    "modifies",
    "placeholder_bundle",
    "result_document",
    "status_name",
]
