"""Reading a run's Job and pod: has it ended, how, and is its pod stuck before it started.

Pure functions over the API's JSON objects (no I/O), so every state a cluster can report is
tested by giving it here as Kubernetes writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from porter_bundle.executor.jobs import INVOCATION_CONTAINER

IMAGE_ERRORS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
"""Waiting reasons of a container whose image cannot be had: the run fails at once."""
CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
"""Waiting reasons that may clear (a Secret not there yet): fail once the start bound is up."""


@dataclass(frozen=True)
class Stuck:
    """Why a run's pod has not started; ``at_once``: waiting longer cannot help."""

    reason: str
    message: str
    at_once: bool

    def describe(self) -> str:
        text = f"{self.reason}: {self.message}" if self.message else self.reason
        return f"the run's pod did not start ({text})"[:1000]


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The status condition of type ``kind`` that is True, if any."""
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def job_failure(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a Job that Kubernetes failed (e.g. DeadlineExceeded), else None."""
    cond = condition(job, "Failed") or condition(job, "FailureTarget")
    if cond is None:
        return None
    return str(cond.get("reason") or "Failed"), str(cond.get("message") or "")


def job_complete(job: Mapping[str, Any]) -> bool:
    return condition(job, "Complete") is not None


def invocation_status(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The invocation container's status in ``pod`` ({} when not reported yet)."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == INVOCATION_CONTAINER:
            return dict(status)
    return {}


def terminated(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The invocation container's ``terminated`` state, once it has exited."""
    state = invocation_status(pod).get("state") or {}
    found = state.get("terminated")
    return dict(found) if found else None


def started(pod: Mapping[str, Any] | None) -> bool:
    """The invocation container has run (is running or has exited)."""
    state = invocation_status(pod).get("state") or {}
    return bool(state.get("running") or state.get("terminated"))


def pod_done(pod: Mapping[str, Any] | None) -> bool:
    """Every container of the pod has ended (the outputs sidecar has printed its record)."""
    return ((pod or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")


def exit_code(pod: Mapping[str, Any] | None) -> int | None:
    found = terminated(pod)
    if found is None or found.get("exitCode") is None:
        return None
    return int(found["exitCode"])


def image_digest(pod: Mapping[str, Any] | None) -> str:
    """The manifest digest of the image that ran, from the container's ``imageID``."""
    image_id = str(invocation_status(pod).get("imageID") or "")
    _, at, digest = image_id.rpartition("@")
    return digest if at and digest.startswith("sha") else ""


def stuck(pod: Mapping[str, Any] | None, events: list[Mapping[str, Any]]) -> Stuck | None:
    """Why the run has no running invocation container, when Kubernetes says why.

    ``events`` are the Job's (FailedCreate: the pod could not be created, e.g. a quota)."""
    if pod is None:
        for event in reversed(events):
            if event.get("reason") == "FailedCreate":
                return Stuck("FailedCreate", str(event.get("message") or ""), at_once=False)
        return None
    status = pod.get("status") or {}
    for cond in status.get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = str(cond.get("reason") or "Unschedulable")
            return Stuck(reason, str(cond.get("message") or ""), at_once=False)
    statuses = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in IMAGE_ERRORS or reason in CONFIG_ERRORS:
            message = f"container {container.get('name')}: {waiting.get('message') or ''}"
            return Stuck(reason, message.rstrip(": "), at_once=reason in IMAGE_ERRORS)
    return None


def newest(pods: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The run's pod (backoffLimit 0 makes one; the newest should a controller make another)."""
    if not pods:
        return None
    return max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))


__all__ = [
    "Stuck",
    "exit_code",
    "image_digest",
    "job_complete",
    "job_failure",
    "newest",
    "pod_done",
    "started",
    "stuck",
    "terminated",
]
