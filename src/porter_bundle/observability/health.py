"""Health that tells the truth: grpc.health.v1 statuses from the server's dependencies.

Every ``--health-probe`` seconds (and once before the server answers its first call) the
probe makes one round trip to the database and pings the container engine, then sets:

- ``""`` (the server overall) and ``porter.v1alpha1.Porter`` (Porter's legacy API, reads
  only): SERVING while the database answers;
- ``porter.bundle.v1.PorterBundle``, whose actions need the engine: SERVING while both answer;
- ``liveness``: always SERVING while the process runs (a Kubernetes liveness probe that must
  not restart the server for an outage of something else).

Each change is logged once (WARNING when a service stops serving, with the reason; INFO when
it serves again) and, with metrics on, shown as ``porter_bundle_health_status``. Watch
streams see each change as it is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health, health_pb2

from porter_bundle.errors import PorterBundleError
from porter_bundle.observability.metrics import Metrics

log = logging.getLogger(__name__)

LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

Check = Callable[[], Awaitable[None]]
"""A dependency check: returns when it answers, raises (Unavailable) when it does not."""


class HealthProbe:
    """Sets the statuses of ``servicer`` from the database and engine checks, periodically."""

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        *,
        database: Check,
        engine: Check,
        database_services: tuple[str, ...],
        engine_services: tuple[str, ...],
        interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._servicer = servicer
        self._checks = {"database": database, "container engine": engine}
        self._needs = {
            **{name: ("database",) for name in database_services},
            **{name: ("database", "container engine") for name in engine_services},
        }
        self._interval = interval
        self._metrics = metrics
        self._status: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> dict[str, int]:
        """Checks every dependency once and sets each service's status; returns them."""
        down: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                await asyncio.wait_for(check(), timeout=max(self._interval, 5.0))
            except PorterBundleError as exc:
                down[name] = exc.message
            except TimeoutError:
                down[name] = "did not answer in time"
            except Exception as exc:  # a check that fails unexpectedly: not serving either
                down[name] = f"{type(exc).__name__}: {exc}"
        statuses: dict[str, int] = {LIVENESS: SERVING}
        for service, needs in self._needs.items():
            missing = [n for n in needs if n in down]
            statuses[service] = NOT_SERVING if missing else SERVING
            if self._status.get(service) == statuses[service]:
                continue
            if missing:
                reasons = "; ".join(f"the {n} is unreachable ({down[n]})" for n in missing)
                log.warning("health of %r: NOT_SERVING: %s", service or "(server)", reasons)
            elif service in self._status:
                log.info("health of %r: SERVING again", service or "(server)")
        for service, status in statuses.items():
            if self._status.get(service) != status:
                await self._servicer.set(service, status)
            if self._metrics is not None:
                self._metrics.health.labels(service).set(1 if status == SERVING else 0)
        self._status = statuses
        return statuses

    def start(self) -> None:
        """Checks every ``interval`` seconds from now on, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="health-probe")

    async def stop(self) -> None:
        """Stops checking."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("health probe failed")


__all__ = ["LIVENESS", "HealthProbe"]
