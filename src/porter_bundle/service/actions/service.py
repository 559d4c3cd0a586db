"""The action service: the calls, over the planner and the background runner.

``execute`` checks everything a run needs while the client waits (:mod:`.planning`), records
the run PENDING with its container (:mod:`.contract`) and returns it; the :class:`Runner`
then waits for a free slot, runs the invocation image through the :class:`Executor` and
finishes the run with its outputs (:mod:`.outputs`). After a crash,
:meth:`ActionService.recover` finishes the runs the previous process left active; with several
replicas on one database, each run is leased to the replica executing it (:mod:`.leases`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping

from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.run_pb2 import Run
from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet
from porter_bundle.bundles.images import PinnedImage, pin_invocation_image
from porter_bundle.config import Settings
from porter_bundle.errors import FailedPrecondition, Unavailable
from porter_bundle.executor import Executor, PhaseHook
from porter_bundle.service.actions.contract import container_spec
from porter_bundle.service.actions.dependencies import Actions, DependencyRunner
from porter_bundle.service.actions.planning import (
    ActionPreview,
    ActionRequest,
    Plan,
    Planner,
    check_request,
)
from porter_bundle.service.actions.redactors import inputs_redactor
from porter_bundle.service.actions.runner import Prepared, Runner
from porter_bundle.service.actions.settings import ActionSettings, LeaseSettings
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.events import run_key
from porter_bundle.service.installations import InstallationService
from porter_bundle.service.observe import Kind, Observers, RunEvent
from porter_bundle.service.runs import FINAL_STATES, RunService, action_name, run_id_not_found
from porter_bundle.service.sources import SourceResolver
from porter_bundle.service.value_sets import ValueSetService
from porter_bundle.validation import check_address

_RECHECK_SECONDS = 5.0
"""How often a wait for a run re-reads the store besides waiting for its events."""


class ActionService:
    """Runs bundle actions in containers and keeps their runs up to date."""

    def __init__(
        self,
        *,
        installations: InstallationService,
        runs: RunService,
        bundles: BundleService,
        credential_sets: ValueSetService[CredentialSet],
        parameter_sets: ValueSetService[ParameterSet],
        resolver: SourceResolver,
        executor: Callable[[], Executor],
        settings: ActionSettings,
        blocking: Blocking,
        observers: Observers | None = None,
        leases: LeaseSettings | None = None,
    ) -> None:
        """``leases``: this replica's id and lease timing (None: a new id, the defaults)."""
        self._runs = runs
        self._blocking = blocking
        self.settings = settings
        self.observers = observers or Observers()
        """Told of every step of every run and of executor and registry errors (see
        service.observe): the logs and metrics."""
        self.container_env: Callable[[str], Mapping[str, str]] | None = None
        """Given a new run's ID, extra environment for its container, in the calling request's
        context (tracing: TRACEPARENT); the bundle's own variables win."""
        self._planner = Planner(
            installations=installations,
            runs=runs,
            bundles=bundles,
            credential_sets=credential_sets,
            parameter_sets=parameter_sets,
            resolver=resolver,
        )
        self._dependencies = DependencyRunner(
            installations=installations,
            bundles=bundles,
            runs=runs,
            planner=self._planner,
            blocking=blocking,
        )
        self._runner = Runner(
            runs=runs,
            bundles=bundles,
            credential_sets=credential_sets,
            resolver=resolver,
            executor=executor,
            settings=settings,
            leases=leases or LeaseSettings.from_settings(Settings()),
            blocking=blocking,
            prepare_again=self._prepare_again,
            observers=self.observers,
        )
        self._installations = installations
        self._bundles = bundles

    @property
    def phase_hooks(self) -> Callable[[str], PhaseHook | None] | None:
        """Given a run ID, what spans the steps of its container (tracing); None: nothing."""
        return self._runner.phase_hooks

    @phase_hooks.setter
    def phase_hooks(self, hooks: Callable[[str], PhaseHook | None] | None) -> None:
        self._runner.phase_hooks = hooks

    async def execute(self, request: ActionRequest) -> Run:
        """Checks and records a run, then starts it in the background; returns it PENDING.

        When the installation's bundle has dependencies (install, upgrade, uninstall), they
        run too, in order, before this returns (see :mod:`.dependencies`)."""
        check_request(request)
        resolved = await self._blocking.run(self._dependencies.dependencies_of, request)
        if resolved is not None:
            actions = Actions(
                execute=self.execute,
                execute_plain=self._execute_plain,
                wait_ended=self.wait_ended,
                ready=self._runner.executor,
            )
            return await self._dependencies.execute(request, resolved, actions)
        return await self._execute_plain(request)

    async def wait_ended(self, run_id: str) -> Run:
        """The run once it has reached a final state (waits on its events, re-reading the
        store every few seconds); UNAVAILABLE after the run time limit and a minute."""
        limit = self.settings.run_timeout_seconds + 60.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        with self._runs.events.subscribe(run_key(run_id)) as sub:
            while True:
                run = await self._blocking.run(self._runs.current, run_id)
                if run is None:
                    raise run_id_not_found(run_id)
                if run.state in FINAL_STATES:
                    return run
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise Unavailable(
                        f"run {run_id} did not end within {limit:.0f} s",
                        reason="RUN_WAIT_TIMEOUT",
                        metadata={"run_id": run_id},
                    )
                await sub.wait(min(remaining, _RECHECK_SECONDS))

    async def _execute_plain(self, request: ActionRequest) -> Run:
        plan = await self._blocking.run(self._planner.plan, request)
        if isinstance(plan, Run):  # an earlier call with the same request_id
            return plan
        # Before anything is recorded: no run waits on a missing or wedged engine.
        await self._runner.check_engine()
        run, prepared = await self._blocking.run(self._record, plan)
        if prepared is not None:
            self.observers.emit(RunEvent(Kind.ACCEPTED, run.id, run))
            self._runner.start(prepared)
        return run

    async def cancel(self, namespace: str, name: str, run_id: str) -> Run:
        """Cancels an active run and returns it at once: CANCELED when it had not started,
        else marked ``canceling`` while its container is stopped in the background."""
        run = await self._blocking.run(self._runs.find, namespace, name, run_id)
        if run.state in FINAL_STATES:
            raise FailedPrecondition(
                f"run {run.id} already ended", reason="RUN_FINISHED", metadata={"run_id": run.id}
            )
        self.observers.emit(RunEvent(Kind.CANCEL_REQUESTED, run.id, run))
        ended = await self._runner.cancel(run)
        if ended is not None:
            return ended
        return await self._blocking.run(self._runs.find, namespace, name, run.id)

    def run_by_request(self, namespace: str, name: str, request_id: str) -> Run | None:
        """The run an earlier call with ``request_id`` recorded, if any (blocking)."""
        return self._runs.by_request(namespace, name, request_id)

    def logs(self, namespace: str, name: str, run_id: str) -> tuple[Run, bytes]:
        """A run and its stored log."""
        check_address(namespace, name)
        return self._runs.logs(namespace, name, run_id)

    async def check_engine(self) -> None:
        """Whether the container engine answers now (health); Unavailable when it does not."""
        await self._runner.check_engine()

    async def recover(self) -> None:
        """Finishes the runs no live replica holds (after a restart: every run a previous
        process left active on SQLite), removes orphans, then keeps the leases."""
        await self._runner.recover()

    async def drain(self, grace: float) -> None:
        """At SIGTERM: stops taking runs over, hands back the pending ones, lets the running
        ones end within ``grace`` seconds (see service.actions.leases)."""
        await self._runner.drain(grace)

    async def close(self) -> None:
        """Stops watching runs (their containers keep going; recover() picks them up next start)."""
        await self._runner.close()

    async def wait_idle(self) -> None:
        """Waits until no run of this process is active (for tests and shutdown)."""
        await self._runner.wait_idle()

    def preview(self, inst: Installation, action: str, *, force: bool = False) -> ActionPreview:
        """What running ``action`` on ``inst`` would use, after every check ``execute`` makes
        before recording a run (bundle, action, parameters, credentials); nothing written.
        ``inst`` need not be stored yet (desired-state apply previews the document's state).
        Like ``execute``'s check, a parameter its bundle's dependencies will source may still
        lack a value (they run first)."""
        request = ActionRequest(inst.namespace, inst.name, action, force=force)
        check_request(request)
        plan = self._planner.plan_for(inst, request, before_dependencies=True)
        return ActionPreview(plan.bundle, plan.document, plan.inputs)

    def _prepare_again(self, run: Run) -> Prepared:
        """A recorded run's container, prepared anew (after a restart, for a run that was
        accepted and never started): the bundle it was accepted with, the parameter values
        it recorded, its credentials resolved again from its credential sets."""
        inst = self._installations.get(run.namespace, run.installation)
        resolved = self._bundles.stored(run.bundle_digest, run.bundle_reference)
        if resolved is None:
            raise FailedPrecondition(
                f"bundle {run.bundle_reference} ({run.bundle_digest}) is no longer stored",
                reason="BUNDLE_NOT_FOUND",
            )
        action = action_name(run)
        inputs = self._planner.inputs_of(
            inst, resolved.document, action, self._runs.run_parameters(run.id), run.credential_sets
        )
        # The image it was accepted with (recorded pinned); runs recorded before images were
        # recorded are pinned now, by the same rules.
        image = (
            PinnedImage(run.invocation_image, run.invocation_image_digest, resolved.relocation_map)
            if run.invocation_image
            else pin_invocation_image(resolved.document, resolved.relocation_map)
        )
        spec = container_spec(
            inst,
            resolved,
            resolved.document,
            action,
            run,
            inputs,
            self.settings,
            image,
            claim=self._runs.stored_claim(run.id),
        )
        return Prepared(run, spec, resolved.document, action, inputs_redactor(inputs))

    def _record(self, plan: Plan) -> tuple[Run, Prepared | None]:
        """Records the run; the prepared container too unless a concurrent retry recorded it first."""
        request, inst = plan.request, plan.installation
        run, created = self._runs.create(
            request.namespace, request.name, plan.new_run(), self._runner.lease
        )
        if not created:
            return run, None
        spec = container_spec(
            inst,
            plan.bundle,
            plan.document,
            request.action,
            run,
            plan.inputs,
            self.settings,
            plan.image,
            claim=self._runs.stored_claim(run.id),
        )
        if self.container_env is not None:
            spec = dataclasses.replace(spec, env={**self.container_env(run.id), **spec.env})
        return run, Prepared(run, spec, plan.document, request.action, inputs_redactor(plan.inputs))


__all__ = ["ActionService"]
