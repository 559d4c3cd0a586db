"""The action service: the calls, over the planner and the background runner.

``execute`` checks everything a run needs while the client waits (:mod:`.planning`), records
the run PENDING with its container (:mod:`.contract`) and returns it; the :class:`Runner`
then waits for a free slot, runs the invocation image through the :class:`Executor` and
finishes the run with its outputs (:mod:`.outputs`). After a crash,
:meth:`ActionService.recover` finishes every run the previous process left active.
"""

from __future__ import annotations

from collections.abc import Callable

from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.run_pb2 import Run
from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet
from porter_bundle.errors import FailedPrecondition
from porter_bundle.executor import Executor
from porter_bundle.service.actions.contract import container_spec
from porter_bundle.service.actions.planning import (
    ActionPreview,
    ActionRequest,
    Plan,
    Planner,
    check_request,
)
from porter_bundle.service.actions.runner import Prepared, Runner, inputs_redactor
from porter_bundle.service.actions.settings import ActionSettings
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.installations import InstallationService
from porter_bundle.service.runs import FINAL_STATES, NewRun, RunService
from porter_bundle.service.sources import SourceResolver
from porter_bundle.service.value_sets import ValueSetService
from porter_bundle.validation import check_address


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
    ) -> None:
        self._runs = runs
        self._blocking = blocking
        self.settings = settings
        self._planner = Planner(
            installations=installations,
            runs=runs,
            bundles=bundles,
            credential_sets=credential_sets,
            parameter_sets=parameter_sets,
            resolver=resolver,
        )
        self._runner = Runner(
            runs=runs,
            bundles=bundles,
            credential_sets=credential_sets,
            resolver=resolver,
            executor=executor,
            settings=settings,
            blocking=blocking,
        )

    async def execute(self, request: ActionRequest) -> Run:
        """Checks and records a run, then starts it in the background; returns it PENDING."""
        check_request(request)
        plan = await self._blocking.run(self._planner.plan, request)
        if isinstance(plan, Run):  # an earlier call with the same request_id
            return plan
        # Before anything is recorded: no run waits on a missing engine.
        await self._runner.executor()
        run, prepared = await self._blocking.run(self._record, plan)
        if prepared is not None:
            self._runner.start(prepared)
        return run

    async def cancel(self, namespace: str, name: str, run_id: str) -> Run:
        """Cancels an active run and returns it once it has ended."""
        run = await self._blocking.run(self._runs.find, namespace, name, run_id)
        if run.state in FINAL_STATES:
            raise FailedPrecondition(
                f"run {run.id} already ended", reason="RUN_FINISHED", metadata={"run_id": run.id}
            )
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

    async def recover(self) -> None:
        """Finishes every run a previous process left PENDING or RUNNING and removes orphans."""
        await self._runner.recover()

    async def close(self) -> None:
        """Stops watching runs (their containers keep going; recover() picks them up next start)."""
        await self._runner.close()

    async def wait_idle(self) -> None:
        """Waits until no run of this process is active (for tests and shutdown)."""
        await self._runner.wait_idle()

    def preview(self, inst: Installation, action: str, *, force: bool = False) -> ActionPreview:
        """What running ``action`` on ``inst`` would use, after every check ``execute`` makes
        before recording a run (bundle, action, parameters, credentials); nothing written.
        ``inst`` need not be stored yet (desired-state apply previews the document's state)."""
        request = ActionRequest(inst.namespace, inst.name, action, force=force)
        check_request(request)
        plan = self._planner.plan_for(inst, request)
        return ActionPreview(plan.bundle, plan.document, plan.inputs)

    def _record(self, plan: Plan) -> tuple[Run, Prepared | None]:
        """Records the run; the prepared container too unless a concurrent retry recorded it first."""
        request, inst = plan.request, plan.installation
        run, created = self._runs.create(
            request.namespace,
            request.name,
            NewRun(
                action=plan.kind,
                custom_action=plan.custom_action,
                bundle_reference=plan.bundle.reference,
                bundle_digest=plan.bundle.digest,
                bundle_version=str(plan.document.get("version", "")),
                parameters=plan.inputs.parameters,
                sensitive_parameters=plan.inputs.sensitive,
                credential_sets=[*inst.credential_sets, *request.credential_sets],
                parameter_sets=[*inst.parameter_sets, *request.parameter_sets],
                request_id=request.request_id,
            ),
        )
        if not created:
            return run, None
        spec = container_spec(
            inst, plan.bundle, plan.document, request.action, run, plan.inputs, self.settings
        )
        return run, Prepared(run, spec, plan.document, request.action, inputs_redactor(plan.inputs))


__all__ = ["ActionService"]
