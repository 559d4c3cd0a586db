"""Executing bundle actions: preconditions, inputs, the container, outputs, cancel, recovery.

``execute`` checks everything a run needs while the client waits (so bad input fails
the call, not the run), records the run PENDING and returns it; a background task
then waits for a free slot, runs the invocation image through the :class:`Executor`
and finishes the run with its outputs. After a crash, :meth:`ActionService.recover`
finishes every run the previous process left active.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from porter.bundle.v1.installation_pb2 import INSTALLATION_STATE_INSTALLED, Installation
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_SUCCEEDED,
    Run,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ParameterSet
from porter_bundle.bundles import cnab
from porter_bundle.errors import FailedPrecondition, Unavailable, Violations
from porter_bundle.executor import (
    LABEL_INSTALLATION,
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
)
from porter_bundle.service.bundles import BundleService, ResolvedBundle
from porter_bundle.service.common import display_address
from porter_bundle.service.inputs import ResolvedInputs, render, resolve_inputs
from porter_bundle.service.installations import InstallationService, bundle_ref_of
from porter_bundle.service.redact import Redactor, register, unregister
from porter_bundle.service.runs import FINAL_STATES, NewRun, OutputValue, RunService, action_name
from porter_bundle.service.sources import SourceResolver
from porter_bundle.service.value_sets import ValueSetService
from porter_bundle.validation import check_address, check_name, check_set_names

log = logging.getLogger(__name__)

CLAIMS_VERSION = "1.0.0-DRAFT+b5ed2f3"
_BUILTIN = {"install": ACTION_INSTALL, "upgrade": ACTION_UPGRADE, "uninstall": ACTION_UNINSTALL}


@dataclass(frozen=True)
class ActionSettings:
    """Limits and choices for running actions."""

    run_timeout_seconds: float = 3600.0
    """A run still going after this long is stopped and FAILS."""
    max_concurrent_runs: int = 4
    """Containers running at once across all installations; further runs wait PENDING."""
    cancel_grace_seconds: float = 10.0
    """Between SIGTERM and SIGKILL when a run is canceled."""
    network: str | None = None
    """Network mode for invocation images; None = no network."""


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
class _Plan:
    request: ActionRequest
    installation: Installation
    bundle: ResolvedBundle
    document: dict[str, Any]
    kind: int
    custom_action: str
    inputs: ResolvedInputs


@dataclass(frozen=True)
class ActionPreview:
    """What a run would use: the bundle and the resolved, checked inputs."""

    bundle: ResolvedBundle
    document: dict[str, Any]
    inputs: ResolvedInputs


@dataclass
class _Prepared:
    run: Run
    spec: ContainerSpec
    bundle: dict[str, Any]
    action: str
    redactor: Redactor
    """Masks the run's secrets in its log, its message and log lines."""


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
        settings: ActionSettings = ActionSettings(),
    ) -> None:
        self._installations = installations
        self._runs = runs
        self._bundles = bundles
        self._credential_sets = credential_sets
        self._parameter_sets = parameter_sets
        self._resolver = resolver
        self._executor_factory = executor
        self._executor_instance: Executor | None = None
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._canceled: set[str] = set()

    # --- the calls ---------------------------------------------------------------------

    async def execute(self, request: ActionRequest) -> Run:
        """Checks and records a run, then starts it in the background; returns it PENDING."""
        _check_request(request)
        plan = await asyncio.to_thread(self._plan, request)
        if isinstance(plan, Run):  # an earlier call with the same request_id
            return plan
        await (
            self._ensure_executor()
        )  # before anything is recorded: no run waits on a missing engine
        run, prepared = await asyncio.to_thread(self._record, plan)
        if prepared is not None:
            self._spawn(run.id, self._run(prepared))
        return run

    async def cancel(self, namespace: str, name: str, run_id: str) -> Run:
        """Cancels an active run and returns it once it has ended."""
        run = await asyncio.to_thread(self._runs.find, namespace, name, run_id)
        if run.state in FINAL_STATES:
            raise FailedPrecondition(
                f"run {run.id} already ended", reason="RUN_FINISHED", metadata={"run_id": run.id}
            )
        self._canceled.add(run.id)
        if run.state == RUN_STATE_PENDING:
            ended = await asyncio.to_thread(
                self._runs.cancel_pending, run.id, "canceled before it started"
            )
            if ended is not None:
                return ended
        task = self._tasks.get(run.id)
        executor = await self._ensure_executor()
        deadline = asyncio.get_running_loop().time() + self.settings.cancel_grace_seconds + 60
        # The container may not exist yet (image pull): keep asking until it stops or the task ends.
        while asyncio.get_running_loop().time() < deadline:
            stopped = await executor.cancel(run.id, self.settings.cancel_grace_seconds)
            if task is None or task.done():
                break
            done, _ = await asyncio.wait({task}, timeout=None if stopped else 0.5)
            if done:
                break
        return await asyncio.to_thread(self._runs.find, namespace, name, run.id)

    def logs(self, namespace: str, name: str, run_id: str) -> tuple[Run, bytes]:
        """A run and its stored log."""
        check_address(namespace, name)
        return self._runs.logs(namespace, name, run_id)

    async def recover(self) -> None:
        """Finishes every run a previous process left PENDING or RUNNING and removes orphans."""
        active = await asyncio.to_thread(self._runs.active)
        try:
            executor = await self._ensure_executor()
        except Unavailable as exc:
            for run in active:
                await asyncio.to_thread(
                    self._finish_quietly,
                    run.id,
                    RUN_STATE_FAILED,
                    f"the server restarted and could not reach the container engine: {exc.message}",
                )
            return
        for run in active:
            self._spawn(run.id, self._recover_run(executor, run))
        active_ids = {r.id for r in active}
        for orphan in await executor.orphans():
            if orphan not in active_ids:
                log.info("removing leftover container of run %s", orphan)
                await executor.recover(orphan)

    async def close(self) -> None:
        """Stops watching runs (their containers keep going; recover() picks them up next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Waits until no run of this process is active (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # --- preparing (in a worker thread) --------------------------------------------------

    def preview(self, inst: Installation, action: str, *, force: bool = False) -> ActionPreview:
        """What running ``action`` on ``inst`` would use, after every check ``execute`` makes
        before recording a run (bundle, action, parameters, credentials); nothing written.
        ``inst`` need not be stored yet (desired-state apply previews the document's state)."""
        request = ActionRequest(inst.namespace, inst.name, action, force=force)
        _check_request(request)
        plan = self._plan_for(inst, request)
        return ActionPreview(plan.bundle, plan.document, plan.inputs)

    def _plan(self, request: ActionRequest) -> _Plan | Run:
        """Everything a run needs, checked; nothing written. A Run when request_id was seen."""
        inst = self._installations.get(request.namespace, request.name)
        if request.request_id:
            earlier = self._runs.by_request(request.namespace, request.name, request.request_id)
            if earlier is not None:
                return earlier
        return self._plan_for(inst, request)

    def _plan_for(self, inst: Installation, request: ActionRequest) -> _Plan:
        resolved = self._bundles.resolve(bundle_ref_of(inst))
        bundle = resolved.document
        kind, custom = self._check_action(inst, bundle, request)
        inputs = resolve_inputs(
            bundle,
            request.action,
            parameter_sets=[*inst.parameter_sets, *request.parameter_sets],
            credential_sets=[*inst.credential_sets, *request.credential_sets],
            installation_parameters=self._installations.parameters_of(inst),
            overrides=request.overrides,
            find_parameter_set=lambda n: self._find_set(
                self._parameter_sets, inst.namespace, n, "parameters"
            ),
            find_credential_set=lambda n: self._find_set(
                self._credential_sets, inst.namespace, n, "credentials"
            ),
            resolver=self._resolver,
        )
        return _Plan(request, inst, resolved, bundle, kind, custom, inputs)

    def _record(self, plan: _Plan) -> tuple[Run, _Prepared | None]:
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
        spec = self._container_spec(
            inst, plan.bundle, plan.document, request.action, run, plan.inputs
        )
        return run, _Prepared(run, spec, plan.document, request.action, _redactor(plan.inputs))

    def _check_action(
        self, inst: Installation, bundle: dict[str, Any], request: ActionRequest
    ) -> tuple[int, str]:
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

    def _find_set(
        self, sets: ValueSetService[Any], namespace: str, name: str, field_name: str
    ) -> Sequence[NamedValueSource] | None:
        for ns in dict.fromkeys([namespace, ""]):
            found = sets.get_full(ns, name)
            if found is not None:
                entries: Sequence[NamedValueSource] = getattr(found, field_name)
                return entries
        return None

    def _container_spec(
        self,
        inst: Installation,
        resolved: ResolvedBundle,
        bundle: dict[str, Any],
        action: str,
        run: Run,
        inputs: ResolvedInputs,
    ) -> ContainerSpec:
        env = {
            "CNAB_ACTION": action,
            "CNAB_INSTALLATION_NAME": inst.name,
            "CNAB_BUNDLE_NAME": str(bundle.get("name", "")),
            "CNAB_BUNDLE_VERSION": str(bundle.get("version", "")),
            "CNAB_REVISION": run.id,
            "CNAB_CLAIMS_VERSION": CLAIMS_VERSION,
            "PORTER_INSTALLATION_NAMESPACE": inst.namespace,
            "PORTER_INSTALLATION_NAME": inst.name,
            "PORTER_INSTALLATION_ID": inst.id,
        }
        files: dict[str, bytes] = {
            "/cnab/bundle.json": resolved.content.encode(),
            "/cnab/app/image-map.json": json.dumps(_image_map(bundle)).encode(),
            "/cnab/claim.json": json.dumps(_claim(inst, bundle, action, run, inputs)).encode(),
        }
        for p in cnab.parameters(bundle):
            if p.name not in inputs.parameters:
                continue
            text = render(inputs.parameters[p.name])
            if p.env:
                env[p.env] = text
            if p.path:
                files[p.path] = text.encode()
            if not p.env and not p.path:
                env[f"CNAB_P_{p.name.upper()}"] = text
        for c in cnab.credentials(bundle):
            if c.name not in inputs.credentials:
                continue
            if c.env:
                env[c.env] = inputs.credentials[c.name]
            if c.path:
                files[c.path] = inputs.credentials[c.name].encode()
        return ContainerSpec(
            run_id=run.id,
            image=cnab.invocation_image(bundle),
            env=env,
            files=files,
            labels={LABEL_INSTALLATION: f"{inst.namespace}/{inst.name}"},
            network=self.settings.network,
            timeout_seconds=self.settings.run_timeout_seconds,
            outputs_dir=cnab.OUTPUTS_DIR
            if any(o.applies_to(action) for o in cnab.outputs(bundle))
            else "",
        )

    # --- running (on the event loop) -----------------------------------------------------

    def _spawn(self, run_id: str, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            work, name=f"run-{run_id}"
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    async def _ensure_executor(self) -> Executor:
        if self._executor_instance is None:
            try:
                self._executor_instance = await asyncio.to_thread(self._executor_factory)
            except ExecutorUnavailable as exc:
                raise Unavailable(str(exc), reason="CONTAINER_ENGINE_UNAVAILABLE") from None
        return self._executor_instance

    async def _run(self, prepared: _Prepared) -> None:
        run_id = prepared.run.id
        redactor = prepared.redactor
        register(run_id, redactor)
        try:
            async with self._slots:
                started = await asyncio.to_thread(self._runs.start, run_id)
                if started is None:  # canceled while it waited for a slot
                    return
                executor = await self._ensure_executor()
                masked = redactor.stream()

                async def on_log(chunk: bytes) -> None:
                    safe = masked.feed(chunk)
                    if safe:
                        await asyncio.to_thread(self._runs.append_log, run_id, safe)

                result = await executor.execute(prepared.spec, on_log)
                if rest := masked.flush():
                    await asyncio.to_thread(self._runs.append_log, run_id, rest)
            await self._complete(run_id, prepared.bundle, prepared.action, result, redactor)
        except asyncio.CancelledError:
            raise  # server shutdown: the container goes on; recover() finishes the run later
        except Unavailable as exc:
            message = redactor.text(exc.message)
            await asyncio.to_thread(self._finish_quietly, run_id, RUN_STATE_FAILED, message)
        except ExecutorUnavailable as exc:
            message = redactor.text(f"lost contact with the container engine: {exc}")
            await asyncio.to_thread(self._finish_quietly, run_id, RUN_STATE_FAILED, message)
        except Exception:
            incident = secrets.token_hex(6)
            log.exception("run %s failed unexpectedly (incident %s)", run_id, incident)
            await asyncio.to_thread(
                self._finish_quietly,
                run_id,
                RUN_STATE_FAILED,
                f"internal error (incident {incident})",
            )
        finally:
            self._canceled.discard(run_id)
            unregister(run_id)

    async def _recover_run(self, executor: Executor, run: Run) -> None:
        try:
            result = await executor.recover(run.id)
            if result is None:
                why = (
                    "the server stopped before this run's container started; run the action again"
                    if run.state == RUN_STATE_PENDING
                    else "the run's container vanished while the server was down"
                )
                await asyncio.to_thread(self._finish_quietly, run.id, RUN_STATE_FAILED, why)
                return
            # Its sensitive parameters are masked; its credentials are not known any more.
            redactor = await asyncio.to_thread(self._stored_redactor, run)
            if result.logs:
                logs = redactor.data(result.logs)
                await asyncio.to_thread(self._runs.replace_log, run.id, logs)
            bundle = await asyncio.to_thread(self._bundles.document, run.bundle_digest) or {}
            action = action_name(run)
            await self._complete(run.id, bundle, action, result, redactor)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not recover run %s", run.id)

    def _stored_redactor(self, run: Run) -> Redactor:
        """Masks what a run recorded before a restart used: its sensitive parameter values
        (stored with the run) and, as far as they resolve again now, its credentials (from
        its credential sets; command sources are not run again)."""
        used = self._runs.run_parameters(run.id)
        secrets = [render(used[n]) for n in run.sensitive_parameters if n in used]
        for set_name in run.credential_sets:
            entries = self._find_set(self._credential_sets, run.namespace, set_name, "credentials")
            for entry in entries or ():
                if entry.source.WhichOneof("kind") == "command":
                    continue
                try:
                    value = self._resolver.resolve(f"credential {entry.name!r}", entry.source)
                except FailedPrecondition:
                    continue
                secrets.append(render(value))
        return Redactor(secrets)

    async def _complete(
        self,
        run_id: str,
        bundle: dict[str, Any],
        action: str,
        result: ContainerResult,
        redactor: Redactor,
    ) -> None:
        values, missing = collect_outputs(bundle, action, result.outputs)
        produced = [render(v.value) for v in values if v.sensitive]
        if produced:  # the image may have printed the sensitive outputs it wrote
            redactor = redactor.plus(produced)
            await asyncio.to_thread(self._mask_stored_log, run_id, redactor)
        if result.canceled or run_id in self._canceled:
            state, message = RUN_STATE_CANCELED, "canceled"
        elif result.timed_out:
            state, message = (
                RUN_STATE_FAILED,
                f"timed out after {self.settings.run_timeout_seconds:g}s",
            )
        elif result.error:
            state, message = RUN_STATE_FAILED, result.error
        elif result.exit_code != 0:
            state, message = (
                RUN_STATE_FAILED,
                f"the invocation image exited with status {result.exit_code}",
            )
        elif missing:
            state, message = RUN_STATE_FAILED, "; ".join(missing)
        else:
            state, message = RUN_STATE_SUCCEEDED, ""
        message = redactor.text(message)
        await asyncio.to_thread(self._finish_quietly, run_id, state, message, values)

    def _mask_stored_log(self, run_id: str, redactor: Redactor) -> None:
        logs = self._runs.stored_log(run_id)
        masked = redactor.data(logs)
        if masked != logs:
            self._runs.replace_log(run_id, masked)

    def _finish_quietly(
        self, run_id: str, state: int, message: str, outputs: Sequence[OutputValue] = ()
    ) -> None:
        try:
            self._runs.finish(run_id, state, message, outputs)
        except FailedPrecondition:
            log.info("run %s had already ended", run_id)


def collect_outputs(
    bundle: dict[str, Any], action: str, files: Mapping[str, bytes]
) -> tuple[list[OutputValue], list[str]]:
    """Typed outputs of ``action`` from the files a container left, and a problem per bad one."""
    values: list[OutputValue] = []
    problems: list[str] = []
    prefix = cnab.OUTPUTS_DIR + "/"
    for d in cnab.outputs(bundle):
        if not d.applies_to(action):
            continue
        if not d.path.startswith(prefix):
            problems.append(f"output {d.name!r}: its path {d.path} is not under {cnab.OUTPUTS_DIR}")
            continue
        raw = files.get(d.path[len(prefix) :])
        if raw is None:
            if "default" in d.schema:
                values.append(OutputValue(d.name, d.schema["default"], d.type, d.sensitive))
            else:
                problems.append(f"output {d.name!r} was not produced (expected at {d.path})")
            continue
        value, problem = _output_value(d, raw)
        if problem:
            problems.append(problem)
        else:
            values.append(OutputValue(d.name, value, d.type, d.sensitive))
    return values, problems


def _output_value(d: cnab.OutputDef, raw: bytes) -> tuple[Any, str]:
    if d.schema.get("contentEncoding") == "base64":
        return base64.b64encode(raw).decode(), ""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None, f"output {d.name!r} is not UTF-8 text"
    if d.type in ("", "string"):
        value: Any = text
    else:
        try:
            value = json.loads(text)
        except ValueError:
            return None, f"output {d.name!r} is not a valid {d.type}"
    from porter_bundle.service.inputs import _check

    problem = _check(value, d.schema, d.sensitive)
    return (None, f"output {d.name!r} {problem}") if problem else (value, "")


def _redactor(inputs: ResolvedInputs) -> Redactor:
    """Masks a run's credential values and sensitive parameter values."""
    sensitive = (render(inputs.parameters[n]) for n in inputs.sensitive)
    return Redactor([*inputs.credentials.values(), *sensitive])


def _check_request(request: ActionRequest) -> None:
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


def _image_map(bundle: dict[str, Any]) -> dict[str, Any]:
    images = bundle.get("images") or {}
    return {name: img for name, img in images.items() if isinstance(img, dict)}


def _claim(
    inst: Installation, bundle: dict[str, Any], action: str, run: Run, inputs: ResolvedInputs
) -> dict[str, Any]:
    return {
        "schemaVersion": CLAIMS_VERSION,
        "id": run.id,
        "installation": inst.name,
        "namespace": inst.namespace,
        "revision": run.id,
        "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "action": action,
        "bundle": bundle,
        "parameters": inputs.parameters,
    }


__all__ = ["ActionPreview", "ActionRequest", "ActionService", "ActionSettings", "collect_outputs"]
