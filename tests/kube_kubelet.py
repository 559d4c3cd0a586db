"""What the Kubernetes stand-in (:mod:`tests.kube_cluster`) does with a Job: a "kubelet" that
makes its pod and plays it, from a :class:`Script`, writing pod status, Job conditions and
container logs as Kubernetes does (the shapes of the API documentation)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from porter_bundle.bundles.images import split_image
from porter_bundle.executor.job_outputs import record_line
from porter_bundle.executor.jobs import INVOCATION_CONTAINER, OUTPUTS_CONTAINER

if TYPE_CHECKING:
    from tests.kube_cluster import Cluster

DIGEST = "sha256:" + "ab" * 32


@dataclass(frozen=True)
class Script:
    """How a run's pod behaves."""

    lines: tuple[str, ...] = ("hello from the invocation image",)
    exit_code: int = 0
    outputs: dict[str, bytes] = field(default_factory=dict)
    outputs_log: str | None = None
    """The outputs container's whole log instead of the record of ``outputs``."""
    hang: bool = False
    """After its lines, run until deleted or past the deadline."""
    line_seconds: float = 0.01
    waiting: tuple[str, str] | None = None
    """(reason, message) the invocation container waits with forever (e.g. ImagePullBackOff)."""
    unschedulable: str | None = None
    """The scheduler's message for a pod that is never scheduled."""
    quota: str | None = None
    """The Job controller's FailedCreate message: no pod is ever made."""
    drop_log_after: int | None = None
    """The first followed stream of the invocation log ends after this many lines."""
    same_stamp: bool = False
    """Every line bears the same timestamp (to the nanosecond)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Kubelet:
    def __init__(self, cluster: Cluster, job: dict[str, Any], script: Script) -> None:
        self.cluster = cluster
        self.job = job
        self.script = script
        self.ns = job["metadata"]["namespace"]
        self.name = job["metadata"]["name"]
        self.pod: dict[str, Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.killed: asyncio.Event | None = None
        self._drops = 1 if script.drop_log_after else 0
        self.deletions: list[float] = []

    def drop_after(self, container: str) -> int | None:
        if container == INVOCATION_CONTAINER and self._drops:
            self._drops -= 1
            return self.script.drop_log_after
        return None

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def teardown(self) -> None:
        """The Job is deleted at once (background propagation): its pod goes."""
        self.stop()

    async def run(self) -> None:
        self.killed = asyncio.Event()
        s = self.script
        if s.quota:
            event = {
                "metadata": {"name": f"{self.name}.{secrets.token_hex(4)}", "namespace": self.ns},
                "involvedObject": {"kind": "Job", "name": self.name, "namespace": self.ns},
                "reason": "FailedCreate",
                "type": "Warning",
                "message": s.quota,
            }
            await self.cluster.put("events", event, "ADDED")
            return
        pod = self.pod = self._make_pod()
        await self.cluster.put("pods", pod, "ADDED")
        if s.unschedulable:
            pod["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": s.unschedulable,
                }
            ]
            await self.cluster.put("pods", pod)
            return
        pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        if s.waiting:
            reason, message = s.waiting
            pod["status"]["containerStatuses"] = [
                self._status({"waiting": {"reason": reason, "message": message}})
            ]
            await self.cluster.put("pods", pod)
            return
        deadline = self.job["spec"].get("activeDeadlineSeconds")
        await self._start()
        body = asyncio.get_running_loop().create_task(self._play())
        killed = asyncio.get_running_loop().create_task(self.killed.wait())
        done, _ = await asyncio.wait(
            {body, killed}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
        )
        if body in done:
            killed.cancel()
            await self._finish(s.exit_code)
            return
        body.cancel()
        killed.cancel()
        if not done:  # the deadline
            await self.deadline_exceeded()
        await self._finish(143)

    async def delete_then_remove(self, grace: float) -> None:
        """Foreground deletion: the pod is stopped (SIGTERM), then pods and the Job are removed."""
        self.deletions.append(grace)
        if self.killed is not None:
            self.killed.set()
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=grace + 5)
        if self.pod is not None:
            await self.cluster.remove("pods", self.ns, self.pod["metadata"]["name"])
        await self.cluster.remove("jobs", self.ns, self.name)

    def _make_pod(self) -> dict[str, Any]:
        template = self.job["spec"]["template"]
        meta = self.job["metadata"]
        labels = {
            **template["metadata"]["labels"],
            "job-name": self.name,
            "batch.kubernetes.io/job-name": self.name,
            "controller-uid": meta["uid"],
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{self.name}-{secrets.token_hex(3)}",
                "namespace": self.ns,
                "labels": labels,
                "creationTimestamp": _now(),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": self.name,
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": []},
        }

    def _status(self, state: dict[str, Any], name: str = INVOCATION_CONTAINER) -> dict[str, Any]:
        spec = self.job["spec"]["template"]["spec"]
        image = next(
            c["image"]
            for c in [*spec["containers"], *spec.get("initContainers", [])]
            if c["name"] == name
        )
        repo = split_image(image).repository
        return {
            "name": name,
            "state": state,
            "image": image,
            "imageID": f"{repo}@{DIGEST}",
            "ready": "running" in state,
            "restartCount": 0,
        }

    async def _start(self) -> None:
        assert self.pod is not None
        pod_name = self.pod["metadata"]["name"]
        running = {"running": {"startedAt": _now()}}
        self.pod["status"].update(phase="Running", startTime=_now())
        self.pod["status"]["containerStatuses"] = [self._status(running)]
        if self._has_sidecar():
            self.pod["status"]["initContainerStatuses"] = [self._status(running, OUTPUTS_CONTAINER)]
            await self.cluster.write_log(
                self.ns, pod_name, OUTPUTS_CONTAINER, b"outputs sidecar ready\n"
            )
        self.job["status"].update(active=1, startTime=_now())
        await self.cluster.put("jobs", self.job)
        await self.cluster.put("pods", self.pod)

    async def _play(self) -> None:
        assert self.pod is not None
        pod_name = self.pod["metadata"]["name"]
        stamp = time.time_ns()
        for line in self.script.lines:
            ns = stamp if self.script.same_stamp else 0
            await self.cluster.write_log(
                self.ns, pod_name, INVOCATION_CONTAINER, line.encode() + b"\n", ns
            )
            await asyncio.sleep(self.script.line_seconds)
        if self.script.hang:
            await asyncio.Event().wait()

    def _has_sidecar(self) -> bool:
        inits = self.job["spec"]["template"]["spec"].get("initContainers") or []
        return any(c["name"] == OUTPUTS_CONTAINER for c in inits)

    async def _finish(self, code: int) -> None:
        assert self.pod is not None
        pod_name = self.pod["metadata"]["name"]
        ended = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "finishedAt": _now(),
            }
        }
        self.pod["status"]["containerStatuses"] = [self._status(ended)]
        await self.cluster.end_log(self.ns, pod_name, INVOCATION_CONTAINER)
        await self.cluster.put("pods", self.pod)
        if self._has_sidecar():  # the native sidecar gets SIGTERM and prints its record
            s = self.script
            files = {k: base64.b64encode(v).decode() for k, v in s.outputs.items()}
            text = s.outputs_log if s.outputs_log is not None else record_line({"files": files})
            await self.cluster.write_log(self.ns, pod_name, OUTPUTS_CONTAINER, text.encode())
            await self.cluster.end_log(self.ns, pod_name, OUTPUTS_CONTAINER)
            self.pod["status"]["initContainerStatuses"] = [
                self._status(
                    {"terminated": {"exitCode": 0, "reason": "Completed"}}, OUTPUTS_CONTAINER
                )
            ]
        self.pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        await self.cluster.put("pods", self.pod)
        await self.job_ended(code)

    async def deadline_exceeded(self) -> None:
        """What the Job controller writes when ``activeDeadlineSeconds`` is up."""
        self.job["status"]["conditions"] = [
            {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
            }
        ]
        await self.cluster.put("jobs", self.job)

    async def job_ended(self, code: int) -> None:
        """The Job's status once its pod has ended with ``code`` (backoffLimit 0)."""
        conditions = self.job["status"].get("conditions") or []
        if not conditions:
            conditions = (
                [{"type": "Complete", "status": "True"}]
                if code == 0
                else [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ]
            )
        self.job["status"].update(
            active=0, conditions=conditions, **({"succeeded": 1} if code == 0 else {"failed": 1})
        )
        await self.cluster.put("jobs", self.job)
