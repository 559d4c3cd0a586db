"""Planning a run while the client waits: the request's syntax, Porter's preconditions, the
bundle and the parameters and credentials, resolved and checked. Nothing is written, so bad
input fails the call, not the run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from porter.bundle.v1.installation_pb2 import INSTALLATION_STATE_INSTALLED, Installation
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    Run,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ParameterSet
from porter_bundle.bundles import cnab
from porter_bundle.bundles.images import PinnedImage, pin_invocation_image
from porter_bundle.errors import FailedPrecondition, NotFound, Violations
from porter_bundle.service.bundles import BundleService, ResolvedBundle
from porter_bundle.service.common import display_address
from porter_bundle.service.inputs import ResolvedInputs, SourceOutput, resolve_inputs
from porter_bundle.service.installations import InstallationService, bundle_ref_of
from porter_bundle.service.runs import NewRun, RunService
from porter_bundle.service.sources import SourceResolver
from porter_bundle.service.value_sets import ValueSetService
from porter_bundle.validation import check_address, check_name, check_set_names

_BUILTIN = {"install": ACTION_INSTALL, "upgrade": ACTION_UPGRADE, "uninstall": ACTION_UNINSTALL}


@dataclass(frozen=True)
class ActionRequest:
    """What a client asked to run."""

    namespace: str
    name: str
    action: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    parameter_sets: Sequence[str] = ()
    credential_sets: Sequence[str] = ()
    force: bool = False
    request_id: str = ""


@dataclass(frozen=True)
class ActionPreview:
    """What a run would use: the bundle and the resolved, checked inputs."""

    bundle: ResolvedBundle
    document: dict[str, Any]
    inputs: ResolvedInputs


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, checked: what :meth:`Planner.plan` returns."""

    request: ActionRequest
    installation: Installation
    bundle: ResolvedBundle
    document: dict[str, Any]
    kind: int
    """The Action enum value (install, upgrade, uninstall or invoke)."""
    custom_action: str
    """The custom action's name; "" for a built-in one."""
    inputs: ResolvedInputs
    image: PinnedImage
    """The invocation image to run, pinned by digest when the bundle knows one."""

    def new_run(self) -> NewRun:
        """The run to record for this plan."""
        request, inst = self.request, self.installation
        return NewRun(
            action=self.kind,
            custom_action=self.custom_action,
            bundle_reference=self.bundle.reference,
            bundle_digest=self.bundle.digest,
            bundle_version=str(self.document.get("version", "")),
            parameters=self.inputs.parameters,
            sensitive_parameters=self.inputs.sensitive,
            credential_sets=[*inst.credential_sets, *request.credential_sets],
            parameter_sets=[*inst.parameter_sets, *request.parameter_sets],
            request_id=request.request_id,
            bundle=self.document,
            invocation_image=self.image.reference,
            invocation_image_digest=self.image.digest,
        )


class Planner:
    """Checks a request against its installation and bundle and resolves its inputs (blocking)."""

    def __init__(
        self,
        *,
        installations: InstallationService,
        runs: RunService,
        bundles: BundleService,
        credential_sets: ValueSetService[CredentialSet],
        parameter_sets: ValueSetService[ParameterSet],
        resolver: SourceResolver,
    ) -> None:
        self._installations = installations
        self._runs = runs
        self._bundles = bundles
        self._credential_sets = credential_sets
        self._parameter_sets = parameter_sets
        self._resolver = resolver

    def plan(self, request: ActionRequest, *, before_dependencies: bool = False) -> Plan | Run:
        """Everything a run needs, checked; nothing written. A Run when request_id was seen.
        ``before_dependencies``: a check before the installation's dependencies run, so a
        required parameter that a dependency's output sources may still lack its value."""
        inst = self._installations.get(request.namespace, request.name)
        if request.request_id:
            earlier = self._runs.by_request(request.namespace, request.name, request.request_id)
            if earlier is not None:
                return earlier
        return self.plan_for(inst, request, before_dependencies=before_dependencies)

    def plan_for(
        self, inst: Installation, request: ActionRequest, *, before_dependencies: bool = False
    ) -> Plan:
        """The plan of ``request`` on ``inst``, which need not be stored yet."""
        resolved = self._bundles.resolve(bundle_ref_of(inst))
        bundle = resolved.document
        kind, custom = _check_action(inst, bundle, request)
        image = pin_invocation_image(bundle, resolved.relocation_map)
        sources = cnab.parameter_sources(bundle)
        wired = {s.dependency for sourced in sources.values() for s in sourced if s.dependency}
        inputs = resolve_inputs(
            bundle,
            request.action,
            parameter_sets=[*inst.parameter_sets, *request.parameter_sets],
            credential_sets=[*inst.credential_sets, *request.credential_sets],
            installation_parameters=self._installations.parameters_of(inst),
            overrides=request.overrides,
            find_parameter_set=lambda n: find_set(
                self._parameter_sets, inst.namespace, n, "parameters"
            ),
            find_credential_set=lambda n: find_set(
                self._credential_sets, inst.namespace, n, "credentials"
            ),
            resolver=self._resolver,
            outputs=self._runs.latest_output_values(inst.id) if inst.id and sources else None,
            dependency_outputs={alias: self._dependency_outputs(inst, alias) for alias in wired},
            deferred=frozenset(
                name
                for name, sourced in sources.items()
                if before_dependencies and any(s.dependency for s in sourced)
            ),
            namespace=inst.namespace,
        )
        return Plan(request, inst, resolved, bundle, kind, custom, inputs, image)

    def inputs_of(
        self,
        inst: Installation,
        bundle: dict[str, Any],
        action: str,
        parameters: Mapping[str, Any],
        credential_sets: Sequence[str],
    ) -> ResolvedInputs:
        """The inputs of a recorded run again: the parameter values it recorded (checked
        again), its credentials resolved again from ``credential_sets``."""
        return resolve_inputs(
            bundle,
            action,
            parameter_sets=[],
            credential_sets=credential_sets,
            installation_parameters={},
            overrides=parameters,
            find_parameter_set=lambda n: None,
            find_credential_set=lambda n: find_set(
                self._credential_sets, inst.namespace, n, "credentials"
            ),
            resolver=self._resolver,
        )

    def _dependency_outputs(self, inst: Installation, alias: str) -> dict[str, SourceOutput]:
        """The latest outputs of the installation of ``inst``'s dependency ``alias``."""
        try:
            dep_id = self._runs.installation_id(
                inst.namespace, dependency_installation(inst.name, alias)
            )
        except NotFound:
            return {}
        return self._runs.latest_output_values(dep_id)


def dependency_installation(parent: str, alias: str) -> str:
    """The name of the installation of dependency ``alias`` of installation ``parent``, as
    Porter names it."""
    return f"{parent}-{alias}"


def check_request(request: ActionRequest) -> None:
    """The request's own syntax: action, set names, request ID, address."""
    v = Violations()
    if not request.action:
        v.add("action", "action is required: install, upgrade, uninstall or a custom action")
    else:
        check_name(v, "action", request.action, what="action")
    check_set_names(v, "parameter_sets", request.parameter_sets)
    check_set_names(v, "credential_sets", request.credential_sets)
    if len(request.request_id) > 128:
        v.add("request_id", "is longer than 128 characters")
    v.raise_if_any()
    check_address(request.namespace, request.name)


def find_set(
    sets: ValueSetService[Any], namespace: str, name: str, field_name: str
) -> Sequence[NamedValueSource] | None:
    """The entries (``field_name``) of set ``name`` in ``namespace``, else in the global one."""
    for ns in dict.fromkeys([namespace, ""]):
        found = sets.get_full(ns, name)
        if found is not None:
            entries: Sequence[NamedValueSource] = getattr(found, field_name)
            return entries
    return None


def _check_action(
    inst: Installation, bundle: dict[str, Any], request: ActionRequest
) -> tuple[int, str]:
    """Porter's preconditions of the action; its Action enum value and custom action name."""
    where = display_address(inst.namespace, inst.name)
    installed = inst.status.state == INSTALLATION_STATE_INSTALLED
    action = request.action
    if action == "install":
        if installed and not request.force:
            raise FailedPrecondition(
                f"installation {where} is already installed; upgrade it, or install with force",
                reason="ALREADY_INSTALLED",
                metadata={"namespace": inst.namespace, "name": inst.name},
            )
        return ACTION_INSTALL, ""
    if action in ("upgrade", "uninstall"):
        if not installed and not request.force:
            raise FailedPrecondition(
                f"installation {where} is not installed, so it cannot be {action}d; "
                f"install it first, or {action} with force",
                reason="NOT_INSTALLED",
                metadata={"namespace": inst.namespace, "name": inst.name, "action": action},
            )
        return _BUILTIN[action], ""
    actions = cnab.custom_actions(bundle)
    if action not in actions:
        known = ", ".join(["install", "upgrade", "uninstall", *sorted(actions)])
        v = Violations()
        v.add("action", f"the bundle has no action {action!r}; it has: {known}")
        v.raise_if_any(reason="UNKNOWN_ACTION")
    if not actions[action].get("stateless", False) and not installed and not request.force:
        raise FailedPrecondition(
            f"action {action!r} needs an installed bundle and installation {where} is not installed",
            reason="NOT_INSTALLED",
            metadata={"namespace": inst.namespace, "name": inst.name, "action": action},
        )
    return ACTION_INVOKE, action


__all__ = [
    "ActionPreview",
    "ActionRequest",
    "Plan",
    "Planner",
    "check_request",
    "dependency_installation",
    "find_set",
]
