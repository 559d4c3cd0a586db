"""A run's objects in one namespace, through the API: the calls the Job executor makes
(:mod:`porter_bundle.executor.kubernetes`), each a method, so that module holds only the logic
of a run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from porter_bundle.executor import kube_state as state
from porter_bundle.executor.base import ExecutorUnavailable
from porter_bundle.executor.jobs import (
    INVOCATION_CONTAINER,
    LABEL_MANAGED_BY,
    LABEL_RUN_ID,
    MANAGED_BY,
    job_name,
)
from porter_bundle.executor.kube_client import KubeClient, KubeError
from porter_bundle.executor.kube_logs import LogFollower
from porter_bundle.executor.logs import LogPump

log = logging.getLogger(__name__)


class RunObjects:
    """Jobs, pods, events and Secrets of runs in ``namespace``."""

    def __init__(
        self, api: KubeClient, namespace: str, *, poll_seconds: float, outputs_limit_bytes: int
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.poll = poll_seconds
        self.outputs_limit_bytes = outputs_limit_bytes

    async def get_job(self, run_id: str) -> Any:
        """The run's Job; None when there is none."""
        return await self._api.maybe("GET", self.job_path(run_id))

    def follower(self, pod: Any, pump: LogPump) -> LogFollower:
        return LogFollower(self._api, self.namespace, pod_name(pod), INVOCATION_CONTAINER, pump)

    def ended(self, pod: Any) -> Callable[[], Awaitable[bool]]:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{pod_name(pod)}"

        async def ended() -> bool:
            now = await self._api.maybe("GET", path)
            return now is None or state.terminated(now) is not None

        return ended

    async def log(self, pod: Any, container: str) -> bytes:
        limit = self.outputs_limit_bytes * 4 // 3 + 64 * 1024
        path = f"/api/v1/namespaces/{self.namespace}/pods/{pod_name(pod)}/log"
        query = [("container", container), ("limitBytes", str(limit))]
        async with self._api.stream(path, query) as body:
            return await body.read()

    async def pods(self, run_id: str) -> tuple[list[Any], str]:
        answer = await self._api.request(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/pods",
            [("labelSelector", selector(run_id))],
        )
        return list(answer.get("items") or []), str(
            (answer.get("metadata") or {}).get("resourceVersion") or ""
        )

    async def events(self, name: str) -> list[Any]:
        fields = f"involvedObject.kind=Job,involvedObject.name={name}"
        answer = await self._api.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/events", [("fieldSelector", fields)]
        )
        return list(answer.get("items") or [])

    async def changes(self, run_id: str, version: str) -> None:
        """Returns at the first change to the run's pods after ``version``, or after the poll."""
        query = [
            ("labelSelector", selector(run_id)),
            ("watch", "true"),
            ("timeoutSeconds", str(max(1, round(self.poll)))),
            ("allowWatchBookmarks", "false"),
        ]
        if version:
            query.append(("resourceVersion", version))
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        try:
            async with asyncio.timeout(self.poll + 5):
                async with self._api.stream(path, query) as body:
                    async for _ in body.iter_any():
                        return
        except (TimeoutError, KubeError):  # 410 Gone: the version is too old; look again
            await asyncio.sleep(min(self.poll, 0.5))

    async def jobs(self, run_id: str = "") -> list[Any]:
        """The Jobs of a run ("": of every run) by their labels."""
        answer = await self._api.request(
            "GET",
            f"/apis/batch/v1/namespaces/{self.namespace}/jobs",
            [("labelSelector", selector(run_id))],
        )
        return list(answer.get("items") or [])

    def job_path(self, run_id: str) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{job_name(run_id)}"

    async def delete_job(self, run_id: str, propagation: str, grace: float) -> None:
        query = [
            ("propagationPolicy", propagation),
            ("gracePeriodSeconds", str(max(0, round(grace)))),
        ]
        await self._api.maybe("DELETE", self.job_path(run_id), query)

    async def remove(self, run_id: str) -> bool:
        """Deletes the run's Job and Secret (either may be gone already); False when they could
        not be (logged, never raised)."""
        try:
            await self.delete_job(run_id, "Background", 0)
            await self._api.maybe(
                "DELETE", f"/api/v1/namespaces/{self.namespace}/secrets/{job_name(run_id)}"
            )
        except (KubeError, ExecutorUnavailable) as exc:
            log.warning("could not delete the Job of run %s (its ttl will): %s", run_id, exc)
            return False
        return True


def selector(run_id: str) -> str:
    managed = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    return f"{managed},{LABEL_RUN_ID}={run_id}" if run_id else managed


def pod_name(pod: Any) -> str:
    return str(((pod or {}).get("metadata") or {}).get("name") or "")


__all__ = ["RunObjects", "pod_name", "selector"]
