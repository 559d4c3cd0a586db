"""Bundles with dependencies (CNAB 500, ``io.cnab.dependencies``), as Porter runs them.

Each dependency is its own installation, ``<installation>-<alias>`` in the same namespace,
with the parent's credential and parameter sets. Install and upgrade run the dependencies
first, in the bundle's ``sequence``, each waited for, then the parent (whose parameters may
take a dependency's outputs: parameter sources of type ``dependencies.output``); uninstall runs
the parent first, then the dependencies in reverse order. Everything is checked before anything
runs: every dependency resolves to a bundle known here (the one its full reference names, as
Porter writes it, or the highest version of its repository in its ranges), there is no cycle,
and the parent's own inputs are valid. A dependency that fails FAILS the parent, with a run
whose message names it: nothing is left half-installed without a record. So for such a
bundle ExecuteAction returns once the dependencies have run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from porter.bundle.v1.bundle_pb2 import Bundle
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    BundleReference,
    Installation,
)
from porter.bundle.v1.run_pb2 import RUN_STATE_FAILED, RUN_STATE_SUCCEEDED, Run
from porter_bundle.bundles.dependencies import (
    Dependency,
    DependencyError,
    dependencies,
    version_key,
)
from porter_bundle.errors import FailedPrecondition, NotFound, PorterBundleError
from porter_bundle.service.actions.planning import (
    ActionRequest,
    Plan,
    Planner,
    dependency_installation,
)
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService, ResolvedBundle
from porter_bundle.service.common import display_address
from porter_bundle.service.installations import InstallationService, bundle_ref_of
from porter_bundle.service.runs import RunService
from porter_bundle.validation import BundleRef

MAX_DEPTH = 10
"""Dependencies of dependencies this deep at most (a longer chain is taken for a cycle)."""
_ORCHESTRATED = ("install", "upgrade", "uninstall")


@dataclass(frozen=True)
class Actions:
    """What the dependency runner drives, from the action service."""

    execute: Callable[[ActionRequest], Awaitable[Run]]
    """Runs an action with its own dependencies (for a dependency's installation)."""
    execute_plain: Callable[[ActionRequest], Awaitable[Run]]
    """Runs an action on one installation only (for the parent)."""
    wait_ended: Callable[[str], Awaitable[Run]]
    """Waits until a run is final."""
    ready: Callable[[], Awaitable[Any]]
    """Checks the container engine can be reached (before anything is recorded)."""


@dataclass(frozen=True)
class Resolved:
    """A dependency and the bundle it resolved to."""

    dependency: Dependency
    bundle: Bundle


class DependencyRunner:
    """Runs the actions of installations whose bundle has dependencies."""

    def __init__(
        self,
        *,
        installations: InstallationService,
        bundles: BundleService,
        runs: RunService,
        planner: Planner,
        blocking: Blocking,
    ) -> None:
        self._installations = installations
        self._bundles = bundles
        self._runs = runs
        self._planner = planner
        self._blocking = blocking

    def dependencies_of(self, request: ActionRequest) -> list[Resolved] | None:
        """The resolved dependencies of the installation's bundle (blocking); None when the
        action is not orchestrated or the bundle has none. FAILED_PRECONDITION naming the
        dependency when one cannot be resolved, or for a cycle."""
        if request.action not in _ORCHESTRATED:
            return None
        inst = self._installations.get(request.namespace, request.name)
        resolved = self._bundles.resolve(bundle_ref_of(inst))
        declared = _declared(resolved.document, resolved.reference)
        if not declared:
            return None
        if request.action == "uninstall":
            return [Resolved(d, Bundle()) for d in declared]  # what is installed goes
        chain = [_repository(resolved)]
        return [self._resolve(d, chain, resolved.reference) for d in declared]

    async def execute(
        self, request: ActionRequest, resolved: list[Resolved], actions: Actions
    ) -> Run:
        """Runs ``request`` with its dependencies; returns the parent's run. The parent's own
        checks come first, then the engine check, before anything is recorded."""
        if request.action == "uninstall":
            await actions.ready()
            return await self._uninstall(request, resolved, actions)
        plan = await self._blocking.run(self._planner.plan, request, before_dependencies=True)
        if isinstance(plan, Run):  # an earlier call with the same request_id
            return plan
        await actions.ready()
        parent = plan.installation
        for item in resolved:
            alias = item.dependency.alias
            name = dependency_installation(parent.name, alias)
            dep = await self._blocking.run(self._ensure_installation, parent, name, item.bundle)
            installed = dep.status.state == INSTALLATION_STATE_INSTALLED
            if request.action == "install" and installed:
                continue  # installed already (e.g. by an earlier attempt): left as it is
            action = "upgrade" if installed else "install"
            child = ActionRequest(
                parent.namespace, name, action, request_id=_child_request_id(request, alias)
            )
            where = f"dependency {alias} ({display_address(parent.namespace, name)})"
            try:
                run = await actions.execute(child)
            except PorterBundleError as exc:
                return await self._blocking.run(
                    self._failed, plan, f"{where} could not {action}: {exc.message}"
                )
            ended = await actions.wait_ended(run.id)
            if ended.state != RUN_STATE_SUCCEEDED:
                why = ended.message or "it did not succeed"
                return await self._blocking.run(
                    self._failed, plan, f"{where} failed to {action} (run {ended.id}): {why}"
                )
        return await actions.execute_plain(request)

    # --- internals ---------------------------------------------------------------

    async def _uninstall(
        self, request: ActionRequest, resolved: list[Resolved], actions: Actions
    ) -> Run:
        run = await actions.execute_plain(request)
        ended = await actions.wait_ended(run.id)
        if ended.state != RUN_STATE_SUCCEEDED:
            return ended
        for item in reversed(resolved):
            name = dependency_installation(request.name, item.dependency.alias)
            try:
                dep = await self._blocking.run(self._installations.get, request.namespace, name)
            except NotFound:
                continue
            if dep.status.state != INSTALLATION_STATE_INSTALLED:
                continue
            # A dependency that fails to uninstall keeps its own failed run; the others go on.
            child = await actions.execute(ActionRequest(request.namespace, name, "uninstall"))
            await actions.wait_ended(child.id)
        return ended

    def _resolve(self, dep: Dependency, chain: list[str], parent: str) -> Resolved:
        """The highest known version of ``dep``'s bundle in its ranges; its own dependencies
        resolve too (a cycle or an unresolvable one fails here, before anything runs)."""
        repository, tag, digest = _split(dep.bundle)
        if repository in chain or len(chain) > MAX_DEPTH:
            cycle = " -> ".join([*chain, repository])
            raise FailedPrecondition(
                f"dependency {dep.alias} of {parent} makes a cycle: {cycle}",
                reason="DEPENDENCY_CYCLE",
                metadata={"dependency": dep.alias, "bundle": dep.bundle},
            )
        if (tag or digest) and not dep.ranges:
            best = self._pinned(dep, parent, BundleRef(repository, digest=digest, tag=tag))
        else:
            known = self._bundles_of(repository)
            accepted = [b for b in known if dep.accepts(b.version)]
            if not accepted:
                versions = ", ".join(sorted({b.version for b in known}, key=version_key))
                raise FailedPrecondition(
                    f"dependency {dep.alias} of {parent}: no bundle of {repository} satisfies "
                    f"{dep.criteria} (versions known here: {versions or 'none'}; register or "
                    "pull one)",
                    reason="DEPENDENCY_UNRESOLVED",
                    metadata={"dependency": dep.alias, "bundle": dep.bundle},
                )
            best = max(accepted, key=lambda b: (version_key(b.version), b.reference))
            best = self._bundles.get(best.reference)
        for nested in _declared(_document(best), best.reference):
            self._resolve(nested, [*chain, repository], best.reference)
        return Resolved(dep, best)

    def _pinned(self, dep: Dependency, parent: str, ref: BundleRef) -> Bundle:
        """The bundle a dependency names by full reference (Porter writes ``repo:tag``)."""
        try:
            resolved = self._bundles.resolve(ref)
        except NotFound:
            raise FailedPrecondition(
                f"dependency {dep.alias} of {parent}: bundle {ref} is not known here "
                "(register or pull it)",
                reason="DEPENDENCY_UNRESOLVED",
                metadata={"dependency": dep.alias, "bundle": dep.bundle},
            ) from None
        return self._bundles.get(resolved.reference)

    def _bundles_of(self, repository: str) -> list[Bundle]:
        """Every bundle registered or pulled here under ``repository``."""
        found: list[Bundle] = []
        token = ""
        while True:
            page = self._bundles.list(name=repository, page_size=500, page_token=token, skip=0)
            found += [b for b in map(Bundle.FromString, page.docs) if b.repository == repository]
            token = page.next_page_token
            if not token:
                return found

    def _ensure_installation(self, parent: Installation, name: str, bundle: Bundle) -> Installation:
        """The dependency's installation, created (or pointed at ``bundle``) as needed."""
        wanted = BundleReference(repository=bundle.repository)
        if bundle.tag:
            wanted.tag = bundle.tag
        else:
            wanted.digest = bundle.digest
        try:
            dep = self._installations.get(parent.namespace, name)
        except NotFound:
            new = Installation(
                namespace=parent.namespace,
                name=name,
                bundle=wanted,
                credential_sets=list(parent.credential_sets),
                parameter_sets=list(parent.parameter_sets),
            )
            return self._installations.create(new)
        if dep.bundle != wanted:
            dep.bundle.CopyFrom(wanted)
            return self._installations.update(dep, ["bundle"])
        return dep

    def _failed(self, plan: Plan, message: str) -> Run:
        """Records the parent's run FAILED (no container ran) with ``message``."""
        run, _ = self._runs.create(plan.request.namespace, plan.request.name, plan.new_run())
        return self._runs.finish(run.id, RUN_STATE_FAILED, message)


def _child_request_id(request: ActionRequest, alias: str) -> str:
    """The idempotency key of a dependency's run: a retry of the parent's request retries the
    dependency's run too (within the 128 characters a request ID may have)."""
    if not request.request_id:
        return ""
    key = f"{request.request_id}/{alias}"
    return key if len(key) <= 128 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _declared(document: dict[str, Any], reference: str) -> list[Dependency]:
    try:
        return dependencies(document)
    except DependencyError as exc:
        raise FailedPrecondition(
            f"bundle {reference} declares its dependencies wrongly: {exc}",
            reason="INVALID_DEPENDENCIES",
            metadata={"reference": reference},
        ) from None


def _split(bundle: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of a dependency's ``bundle``: REGISTRY/NAME as the spec
    writes it, or a full reference as Porter does (``localhost:5000/mysql:v0.1.4``)."""
    if "@" in bundle:
        repository, _, digest = bundle.partition("@")
        return repository, "", digest
    head, sep, tail = bundle.rpartition(":")
    if sep and "/" not in tail:
        return head, tail, ""
    return bundle, "", ""


def _repository(resolved: ResolvedBundle) -> str:
    ref = resolved.reference
    return ref.rpartition("@")[0] if "@" in ref else ref.rpartition(":")[0]


def _document(bundle: Bundle) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(bundle.bundle_json)
    return doc


__all__ = ["Actions", "DependencyRunner", "Resolved"]
