"""Desired-state reconciliation of an installation, as ``porter installations apply`` does it.

Porter (pkg/porter/reconcile.go, ``ReconcileInstallation`` and ``IsInstallationInSync``):

- the action is install when the installation is not installed, else upgrade, or uninstall
  when the document says ``uninstalled: true``;
- an installation that was uninstalled is never reconciled again;
- ``uninstalled: true``: uninstall when installed, else nothing;
- not installed: install;
- installed: upgrade when the bundle digest, the resolved parameters (defaults and parameter
  sets included, compared by value) or the credential set names (sorted) differ from the
  last run; else it is in sync and nothing runs;
- ``--force`` runs the action even when in sync; ``--dry-run`` decides and runs nothing.

Differences, on purpose: the comparison is with the last *successful* install or upgrade
(Porter takes the last run whatever its action and result, so a failed upgrade looks in sync
and is never retried); parameter set names count too (a changed list of sets is a changed
desired state even when the values happen to match); parameters that do not apply to
upgrade are left out of the comparison (they cannot change by upgrading), and so are those a
parameter source fills (an output fed back, e.g. porter-state); ``force`` on an
``uninstalled: true`` installation that is not installed uninstalls (Porter would install).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    Installation,
)
from porter.bundle.v1.run_pb2 import ACTION_UPGRADE, Run
from porter_bundle.bundles import cnab
from porter_bundle.service.actions import ActionPreview

INSTALL, UPGRADE, UNINSTALL = "install", "upgrade", "uninstall"
_STATE_NAMES: dict[int, str] = {
    INSTALLATION_STATE_INSTALLED: "installed",
    INSTALLATION_STATE_UNINSTALLED: "uninstalled",
}
_MISSING = object()

Preview = Callable[[str, bool], ActionPreview]
"""Runs ActionService.preview for (action, force) on the desired installation."""


@dataclass(frozen=True)
class Change:
    """One difference that drove the decision, named by its document path."""

    field: str
    current: Any = None
    """What the installation has or last ran with (None: absent or withheld)."""
    desired: Any = None
    """What the document asks for (None: absent or withheld)."""
    sensitive: bool = False
    """True for a sensitive parameter: both values withheld."""


@dataclass(frozen=True)
class LastRun:
    """The installation's last successful install or upgrade, with every parameter value it used."""

    run: Run
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class Decision:
    """What apply does about an installation: an action ("" = none), why, and what differs."""

    action: str
    reason: str
    changes: tuple[Change, ...] = ()
    force_action: bool = False
    """Run the action with ExecuteAction's ``force`` (past its installed/not-installed checks)."""


def state_name(state: int) -> str:
    """Porter's name of an installation state."""
    return _STATE_NAMES.get(state, "defined")


def decide(
    desired: Installation, last: LastRun | None, *, force: bool, preview: Preview
) -> Decision:
    """The decision for ``desired`` (the document's state, carrying the stored status).

    ``preview`` is called for the action decided on, so every check a run would make (bundle
    known, action allowed, parameters and credentials resolved and valid) fails the decision
    before anything is written.
    """
    state = desired.status.state
    current = state_name(state)
    if desired.uninstalled:
        if state == INSTALLATION_STATE_INSTALLED:
            preview(UNINSTALL, False)
            return Decision(
                UNINSTALL,
                "uninstalled is true and the bundle is installed",
                (Change("status", current, "uninstalled"),),
            )
        why = (
            "the installation is already uninstalled"
            if state == INSTALLATION_STATE_UNINSTALLED
            else "uninstalled is true and the bundle was never installed"
        )
        if force:
            preview(UNINSTALL, True)
            return Decision(UNINSTALL, f"{why}; uninstalling anyway (force)", force_action=True)
        return Decision("", why)
    if state == INSTALLATION_STATE_UNINSTALLED:
        if force:
            preview(INSTALL, False)
            return Decision(
                INSTALL,
                "the installation was uninstalled; installing it again (force)",
                (Change("status", current, "installed"),),
            )
        return Decision(
            "",
            "the installation was uninstalled, and Porter does not reconcile it again: apply "
            "with force (or run install) to install it again",
        )
    if state != INSTALLATION_STATE_INSTALLED:
        preview(INSTALL, False)
        return Decision(
            INSTALL,
            "the bundle has not been installed successfully yet",
            (Change("status", current, "installed"),),
        )
    planned = preview(UPGRADE, False)
    if last is None:
        return Decision(UPGRADE, "no successful install or upgrade of the installation is recorded")
    changes = tuple(drift(desired, last, planned))
    if changes:
        fields = ", ".join(c.field for c in changes)
        return Decision(
            UPGRADE, f"out of sync with the last successful {_action(last)}: {fields}", changes
        )
    if force:
        return Decision(UPGRADE, "in sync; upgrading anyway (force)")
    return Decision(
        "",
        f"in sync: bundle, parameters, credential and parameter sets match the last successful "
        f"{_action(last)} (run {last.run.id})",
    )


def _action(last: LastRun) -> str:
    return UPGRADE if last.run.action == ACTION_UPGRADE else INSTALL


def drift(desired: Installation, last: LastRun, planned: ActionPreview) -> list[Change]:
    """How the desired state differs from what the last successful install or upgrade used."""
    changes: list[Change] = []
    run = last.run
    if run.bundle_digest != planned.bundle.digest:
        changes.append(
            Change(
                "bundle",
                {"reference": run.bundle_reference, "digest": run.bundle_digest},
                {"reference": planned.bundle.reference, "digest": planned.bundle.digest},
            )
        )
    defs = {p.name: p for p in cnab.parameters(planned.document)}
    # A parameter its source (an output, e.g. porter-state) fills is state the bundle keeps,
    # not desired state: it changes with every run and never calls for an upgrade.
    state = planned.inputs.sourced
    new = {k: v for k, v in planned.inputs.parameters.items() if k not in state}
    old = {
        name: value
        for name, value in last.parameters.items()
        if (name not in defs or defs[name].applies_to(UPGRADE)) and name not in state
    }
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name, _MISSING), new.get(name, _MISSING)
        if _canonical(before) == _canonical(after):
            continue
        sensitive = name in planned.inputs.sensitive or (name in defs and defs[name].sensitive)
        changes.append(
            Change(
                f"parameters.{name}",
                None if sensitive or before is _MISSING else before,
                None if sensitive or after is _MISSING else after,
                sensitive,
            )
        )
    for field, ran, wanted in (
        ("credentialSets", run.credential_sets, desired.credential_sets),
        ("parameterSets", run.parameter_sets, desired.parameter_sets),
    ):
        if sorted(ran) != sorted(wanted):
            changes.append(Change(field, list(ran), list(wanted)))
    return changes


def _canonical(value: Any) -> str:
    """Equal values, equal text: integral floats read as ints (7 and 7.0 are one value)."""
    if value is _MISSING:
        return "\0missing"
    return json.dumps(_normal(value), sort_keys=True, separators=(",", ":"))


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value
