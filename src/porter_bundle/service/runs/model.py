"""What a run is made of, beside its protobuf message: the states, the request to record one,
its outputs, and the errors of a run that is not there."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    Run,
)
from porter_bundle.errors import FailedPrecondition, NotFound
from porter_bundle.service.common import display_address

LATEST = "latest"
ACTIVE_STATES = frozenset({RUN_STATE_PENDING, RUN_STATE_RUNNING})
assert {1, 2} == ACTIVE_STATES  # store.models.ACTIVE_RUN_PREDICATE spells these out for its index
FINAL_STATES = frozenset({RUN_STATE_SUCCEEDED, RUN_STATE_FAILED, RUN_STATE_CANCELED})
MODIFYING_ACTIONS = frozenset({ACTION_INSTALL, ACTION_UPGRADE, ACTION_UNINSTALL})
ACTION_NAMES = {
    ACTION_INSTALL: "install",
    ACTION_UPGRADE: "upgrade",
    ACTION_UNINSTALL: "uninstall",
}


@dataclass(frozen=True)
class NewRun:
    """What the caller decided a run should do (after resolving bundle, sets and parameters)."""

    action: int
    custom_action: str = ""
    bundle_reference: str = ""
    bundle_digest: str = ""
    bundle_version: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    sensitive_parameters: frozenset[str] = frozenset()
    credential_sets: Sequence[str] = ()
    parameter_sets: Sequence[str] = ()
    request_id: str = ""
    invocation_image: str = ""
    invocation_image_digest: str = ""
    bundle: Mapping[str, Any] | None = None
    """The bundle.json the run uses, for its claim; None: the stored document of
    ``bundle_digest`` (or, when that is unknown, what the run says of its bundle)."""


@dataclass(frozen=True)
class Lease:
    """A replica's hold on the runs it executes: its id and how long a lease lasts unless
    renewed (see service.actions.leases)."""

    owner: str
    seconds: float


class LeaseLost(FailedPrecondition):
    """The run is no longer this replica's: its lease expired and another replica took it
    over (or it was handed back). The replica stops touching it."""

    default_reason = "RUN_LEASE_LOST"


@dataclass(frozen=True)
class OutputValue:
    """One output a finished run produced (``value`` is any JSON value)."""

    name: str
    value: Any
    type: str = ""
    sensitive: bool = False
    written: str | None = None
    """The text the bundle wrote (its file, decoded; base64 for a base64 output); None when
    the value is not from a file (a default)."""
    internal: bool = False
    """Porter marks the output internal (``porter-state``): its legacy API never lists it."""


@dataclass(frozen=True)
class ResolvedOutputs:
    """Outputs of one run, and which run "latest" resolved to."""

    run_id: str
    run_state: int
    docs: list[bytes]


def action_name(run: Run) -> str:
    """The CNAB action name of a run ("install", ..., or the custom action)."""
    return run.custom_action if run.action == ACTION_INVOKE else ACTION_NAMES.get(run.action, "")


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: stable text for digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rendered_text(value_json: str) -> str:
    """A stored output value as text, when the text the bundle wrote is not kept: a string as
    it is, anything else as its (canonical) JSON."""
    value = json.loads(value_json)
    return value if isinstance(value, str) else value_json


def run_id_not_found(run_id: str) -> NotFound:
    """The error of a run addressed by its ID alone that does not exist (or that the caller
    may not see: the same error, so its existence is not disclosed)."""
    return NotFound(f"run {run_id} not found", reason="RUN_NOT_FOUND", metadata={"run_id": run_id})


def run_not_found(namespace: str, name: str, run_id: str) -> NotFound:
    """The error of a run addressed by its installation that does not exist."""
    return NotFound(
        f"installation {display_address(namespace, name)} has no run {run_id}",
        reason="RUN_NOT_FOUND",
        metadata={"namespace": namespace, "name": name, "run_id": run_id},
    )
