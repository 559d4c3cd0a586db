"""The Kubernetes Job executor: a run as a Job (:mod:`~porter_bundle.executor.jobs`), watched
through the API until its pod has ended.

The order of calls for a run: create its Job suspended; create its Secret owned by the Job
(deleting the Job deletes it); resume the Job. Then, until the pod has ended: list the run's
pods, read the Job, wait for a change (a watch of the pods, bounded by ``poll_seconds``); follow
the invocation container's log once it has started (:mod:`~porter_bundle.executor.kube_logs`).
Once the pod has ended, read the outputs sidecar's record from its log
(:mod:`~porter_bundle.executor.job_outputs`) and delete the Job (and the Secret, should its
owner reference not have been set).

- Cancel deletes the Job with foreground propagation; the pod gets SIGTERM and, after its
  ``terminationGracePeriodSeconds`` (the cancel grace), SIGKILL. The run is CANCELED.
- Timeout is the Job's ``activeDeadlineSeconds``: the run FAILS with Kubernetes' reason.
- A pod that cannot start fails the run with the pod's reason: at once for an image that
  cannot be pulled, after ``start_timeout_seconds`` for a pod that is not scheduled or not
  created (quota, FailedCreate).
- If the task running :meth:`~KubernetesExecutor.execute` is cancelled (the server stops), the
  Job goes on; :meth:`~KubernetesExecutor.recover` re-attaches to it by its labels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from porter_bundle.executor import kube_state as state
from porter_bundle.executor.base import ContainerResult, ContainerSpec, ExecutorUnavailable, LogSink
from porter_bundle.executor.job_outputs import OutputsUnreadable, parse_record
from porter_bundle.executor.jobs import (
    ANNOTATION_OUTPUTS_DIR,
    LABEL_RUN_ID,
    OUTPUTS_CONTAINER,
    JobSettings,
    RunNotRepresentable,
    job_name,
    owned_by,
    run_job,
    run_secret,
)
from porter_bundle.executor.kube_client import KubeClient, KubeError
from porter_bundle.executor.kube_objects import RunObjects, pod_name
from porter_bundle.executor.logs import DEFAULT_MAX_LOG_BYTES, LogPump

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
PING_SECONDS = 5.0
ENDED_WAIT_SECONDS = 60.0
"""How long a Job that Kubernetes failed (deadline) may take to stop its pod."""


@dataclass
class _Run:
    run_id: str
    canceled: bool = False
    done: bool = False


class KubernetesExecutor:
    """Runs each :class:`ContainerSpec` as a Kubernetes Job. Build it anywhere (it connects on
    first use); close it with :meth:`aclose`."""

    def __init__(
        self,
        *,
        helper_image: str,
        kubeconfig: str = "",
        namespace: str = "",
        service_account: str = "",
        image_pull_secrets: tuple[str, ...] = (),
        ttl_seconds: int = 3600,
        start_timeout_seconds: float = 300.0,
        stop_grace_seconds: float = 10.0,
        poll_seconds: float = 2.0,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
        outputs_limit_bytes: int = JobSettings("", "").outputs_limit_bytes,
    ) -> None:
        """
        Args:
            helper_image: the porter-bundle image, the outputs sidecar of every run.
            kubeconfig: the cluster's kubeconfig; "" for the pod's service account.
            namespace: where runs go; "" for the server's own (its service account's), else
                ``default``.
            start_timeout_seconds: the longest a pod may stay unscheduled or uncreated.
            stop_grace_seconds: the pods' termination grace (SIGTERM to SIGKILL).
            poll_seconds: the longest between two looks at a run when no watch event comes.
        """
        self._api = KubeClient(kubeconfig)
        self._settings = JobSettings(
            namespace=namespace or _own_namespace(),
            helper_image=helper_image,
            service_account=service_account,
            image_pull_secrets=tuple(image_pull_secrets),
            ttl_seconds_after_finished=ttl_seconds,
            outputs_limit_bytes=outputs_limit_bytes,
            termination_grace_seconds=max(0, round(stop_grace_seconds)),
        )
        self._objects = RunObjects(
            self._api,
            self._settings.namespace,
            poll_seconds=poll_seconds,
            outputs_limit_bytes=outputs_limit_bytes,
        )
        self._start_timeout = start_timeout_seconds
        self._poll = poll_seconds
        self._max_log_bytes = max_log_bytes
        self._runs: dict[str, _Run] = {}

    @property
    def namespace(self) -> str:
        return self._settings.namespace

    @property
    def url(self) -> str:
        return f"{self._api.host} (namespace {self.namespace})"

    async def aclose(self) -> None:
        """Closes the connection (Jobs keep running)."""
        await self._api.close()

    async def __aenter__(self) -> KubernetesExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -----------------------------------------------------------------------------------------
    # The Executor protocol

    async def execute(
        self, spec: ContainerSpec, on_log: LogSink | None = None, *, keep: bool = False
    ) -> ContainerResult:
        """Creates the run's Job and Secret, waits for its pod to end, collects, deletes them
        (``keep`` is not honoured yet: the Job and its Secret go as soon as the result is read,
        so a run whose end cannot be stored is not re-read from its Job)."""
        if spec.run_id in self._runs:
            return ContainerResult(exit_code=None, error=f"run {spec.run_id} is already executing")
        run = self._runs[spec.run_id] = _Run(spec.run_id)
        keep = False
        try:
            try:
                job, secret = run_job(spec, self._settings), run_secret(spec, self._settings)
            except RunNotRepresentable as exc:
                return ContainerResult(exit_code=None, error=str(exc))
            created = await self._create(run, job, secret)
            if isinstance(created, ContainerResult):
                return created
            return await self._finish(run, spec.outputs_dir, on_log)
        except asyncio.CancelledError:
            keep = True  # the server stops: the Job goes on, recover() finishes it
            raise
        finally:
            run.done = True
            del self._runs[spec.run_id]
            if not keep:
                await asyncio.shield(self._objects.remove(spec.run_id))

    async def ping(self) -> None:
        """The API answers ``/version`` within a few seconds, else ExecutorUnavailable."""
        try:
            await asyncio.wait_for(self._api.request("GET", "/version"), PING_SECONDS)
        except TimeoutError:
            raise ExecutorUnavailable(
                f"the Kubernetes API at {self._api.host} did not answer within {PING_SECONDS:g}s"
            ) from None
        except KubeError as exc:
            raise ExecutorUnavailable(f"the Kubernetes API at {self._api.host}: {exc}") from None

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        """Deletes the run's Job with foreground propagation (its pod gets SIGTERM, SIGKILL after
        ``grace_seconds``). False when the run has no Job that is still going."""
        run = self._runs.get(run_id)
        if run is not None:
            if run.done:
                return False
            run.canceled = True
        job = await self._objects.get_job(run_id)
        if job is None:
            return run is not None  # not created yet: execute() sees the flag and stops
        if run is None and (state.job_complete(job) or state.job_failure(job)):
            return False
        await self._objects.delete_job(run_id, "Foreground", grace_seconds)
        return True

    async def recover(self, run_id: str, *, keep: bool = False) -> ContainerResult | None:
        """Re-attaches to a run's Job (found by its labels) and finishes it like :meth:`execute`
        would (``keep`` is not honoured yet, as there); None when the run has no Job (a stray Secret of it is removed)."""
        if run_id in self._runs:
            raise RuntimeError(f"run {run_id} is being executed by this executor")
        found = await self._objects.jobs(run_id)
        if not found:
            await self._objects.remove(run_id)
            return None
        job = found[0]
        run = self._runs[run_id] = _Run(run_id)
        keep = False
        try:
            if (job.get("spec") or {}).get("suspend"):
                return ContainerResult(
                    exit_code=None, error="the run's Job was created but never started"
                )
            annotations = (job.get("metadata") or {}).get("annotations") or {}
            outputs_dir = str(annotations.get(ANNOTATION_OUTPUTS_DIR, "/cnab/app/outputs"))
            return await self._finish(run, outputs_dir, None)
        except asyncio.CancelledError:
            keep = True
            raise
        finally:
            run.done = True
            del self._runs[run_id]
            if not keep:
                await asyncio.shield(self._objects.remove(run_id))

    async def remove(self, run_id: str) -> bool:
        """Deletes the run's Job and Secret; False when they could not be (their ttl will)."""
        return await self._objects.remove(run_id)

    async def settle(self, wait_seconds: float) -> bool:
        """Nothing is removed in the background here: always settled."""
        return True

    async def orphans(self) -> list[str]:
        """Run IDs of every Job this service created that still exists. (A run's Secret is
        owned by its Job: Kubernetes deletes it with the Job, so Secrets need no listing, and
        the server no right to list Secrets, which would let it read them all.)"""
        items = await self._objects.jobs()
        ids = {((i.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN_ID) for i in items}
        return sorted(str(i) for i in ids if i)

    # -----------------------------------------------------------------------------------------

    async def _create(
        self, run: _Run, job: dict[str, Any], secret: dict[str, Any]
    ) -> ContainerResult | None:
        """Job (suspended), its Secret, then the Job resumed; a result when it cannot be."""
        ns = self.namespace
        try:
            created = await self._api.request(
                "POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body=job
            )
        except KubeError as exc:
            return ContainerResult(exit_code=None, error=f"Kubernetes refused the run's Job: {exc}")
        try:
            await self._api.request(
                "POST", f"/api/v1/namespaces/{ns}/secrets", body=owned_by(secret, created)
            )
            if run.canceled:
                return ContainerResult(exit_code=None, canceled=True)
            await self._api.request(
                "PATCH",
                self._objects.job_path(run.run_id),
                body={"spec": {"suspend": False}},
                patch=True,
            )
        except KubeError as exc:
            return ContainerResult(
                exit_code=None, error=f"Kubernetes refused the run's inputs Secret or Job: {exc}"
            )
        return None

    async def _finish(self, run: _Run, outputs_dir: str, on_log: LogSink | None) -> ContainerResult:
        """Watches the run to its end; its result (logs, outputs)."""
        pump = LogPump(asyncio.Queue(), on_log, self._max_log_bytes)
        name, follower_task = job_name(run.run_id), None
        first_look, failed_at = time.monotonic(), None
        pod: Any = None
        try:
            while True:
                job = await self._objects.get_job(run.run_id)
                pods, version = await self._objects.pods(run.run_id)
                pod = state.newest(pods) or pod
                if follower_task is None and state.started(pod):
                    follower = self._objects.follower(pod, pump)
                    follower_task = asyncio.create_task(follower.follow(self._objects.ended(pod)))
                if job is None or (job.get("metadata") or {}).get("deletionTimestamp"):
                    if run.canceled:
                        if job is None:
                            break
                    elif job is None:
                        return await self._result(
                            pod,
                            pump,
                            follower_task,
                            None,
                            outputs_dir,
                            error="the run's Job was deleted",
                        )
                elif state.pod_done(pod) or state.job_complete(job):
                    break
                elif failure := state.job_failure(job):
                    failed_at = failed_at or time.monotonic()
                    if pod is None or time.monotonic() - failed_at > ENDED_WAIT_SECONDS:
                        break
                elif not state.started(pod):
                    events = await self._objects.events(name) if pod is None else []
                    stuck = state.stuck(pod, events)
                    waited = time.monotonic() - first_look
                    if stuck is not None and (stuck.at_once or waited > self._start_timeout):
                        await self._objects.delete_job(run.run_id, "Foreground", 0)
                        return ContainerResult(exit_code=None, error=stuck.describe())
                    if stuck is None and pod is None and waited > self._start_timeout:
                        await self._objects.delete_job(run.run_id, "Foreground", 0)
                        return ContainerResult(
                            exit_code=None,
                            error=f"Kubernetes created no pod for the run within "
                            f"{self._start_timeout:g}s",
                        )
                await self._objects.changes(run.run_id, version)
            failure = state.job_failure(job) if job else None
            return await self._result(
                pod, pump, follower_task, failure, outputs_dir, canceled=run.canceled
            )
        finally:
            if follower_task is not None and not follower_task.done():
                follower_task.cancel()

    async def _result(
        self,
        pod: Any,
        pump: LogPump,
        follower_task: asyncio.Task[None] | None,
        failure: tuple[str, str] | None,
        outputs_dir: str,
        *,
        canceled: bool = False,
        error: str = "",
    ) -> ContainerResult:
        if follower_task is not None:
            try:
                await asyncio.wait_for(follower_task, ENDED_WAIT_SECONDS)
            except (TimeoutError, KubeError, ExecutorUnavailable) as exc:
                log.warning("the log of %s could not be read to its end: %s", pod_name(pod), exc)
        elif state.started(pod) and not canceled:
            await self._objects.follower(pod, pump).read_all()
        code = state.exit_code(pod)
        timed_out = failure is not None and failure[0] == "DeadlineExceeded"
        if failure is not None and not canceled and (timed_out or code is None):
            # (A Job failed by an invocation that exited non-zero says no more than its code.)
            error = error or f"Kubernetes failed the run's Job ({failure[0]}: {failure[1]})"[:1000]
        outputs: dict[str, bytes] = {}
        if outputs_dir and state.pod_done(pod) and not canceled and code is not None:
            try:
                outputs = parse_record(await self._objects.log(pod, OUTPUTS_CONTAINER))
            except OutputsUnreadable as exc:
                if code == 0 and not error:
                    error = f"the run's outputs could not be read: {exc}"
        return ContainerResult(
            exit_code=code,
            logs=pump.logs(),
            outputs=outputs,
            timed_out=timed_out,
            canceled=canceled,
            error=error,
            image_digest=state.image_digest(pod),
        )


def _own_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


__all__ = ["KubernetesExecutor"]
