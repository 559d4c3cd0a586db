"""The container executor: runs a :class:`ContainerSpec` on a Docker Engine API server.

The same code drives Docker and Podman (its Docker-compatible service). The pieces:
:mod:`~porter_bundle.executor.engine` connects, :mod:`~porter_bundle.executor.pulls` gets
images, :mod:`~porter_bundle.executor.lifecycle` takes a container from creation to removal,
:mod:`~porter_bundle.executor.logs` follows its log, and every blocking SDK call crosses
:mod:`~porter_bundle.executor.bridge` into a thread. This module is the
:class:`~porter_bundle.executor.base.Executor` protocol over them.

If the task running :meth:`ContainerExecutor.execute` is cancelled once the container has
started (the service is shutting down), the container is left running on purpose: a new
process finds it with :meth:`~ContainerExecutor.orphans` and finishes it with
:meth:`~ContainerExecutor.recover`. So is one whose engine stopped answering (the same
``recover`` finishes it once the engine answers again), and, with ``keep``, one that ran to its
end, until the caller has recorded its result and calls :meth:`~ContainerExecutor.remove`.
Every other way out of ``execute`` removes it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from porter_bundle.executor.base import (
    LABEL_MANAGED,
    LABEL_RUN_ID,
    ContainerResult,
    ContainerSpec,
    ExecutorUnavailable,
    LogSink,
)
from porter_bundle.executor.bridge import DEFAULT_ENGINE_THREADS, CallPool
from porter_bundle.executor.engine import (
    DEFAULT_PROBE_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    connect,
    unreachable_as_unavailable,
)
from porter_bundle.executor.hostdir import LABEL_HOST_OUTPUTS
from porter_bundle.executor.lifecycle import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_STOP_GRACE_SECONDS,
    ENGINE_LOST,
    LABEL_OUTPUTS_DIR,
    LABEL_TIMEOUT,
    Lifecycle,
    Run,
)
from porter_bundle.executor.logs import DEFAULT_MAX_LOG_BYTES
from porter_bundle.executor.pulls import ImagePuller

log = logging.getLogger(__name__)

_DEFAULT_OUTPUTS_DIR = ContainerSpec(run_id="", image="").outputs_dir
REMOVAL_WAIT_SECONDS = 10.0
"""How long :meth:`ContainerExecutor.aclose` waits for the removals under way."""


class ContainerExecutor:
    """Runs containers through the Docker Engine API of Docker or Podman.

    The constructor connects, blocking (build it in a thread from async code): to ``host``
    if given, else to the first that answers of ``DOCKER_HOST`` and the usual Docker and
    Podman sockets (:func:`~porter_bundle.executor.engine.default_hosts`); ExecutorUnavailable,
    listing every address tried and why it failed, when none does. Close it with
    :meth:`aclose` (or ``async with``).
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        pull_insecure_registries: frozenset[str] = frozenset(),
        registry_auth: Mapping[str, tuple[str, str]] | None = None,
        stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS,
        request_timeout_seconds: int = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        probe_timeout_seconds: int = DEFAULT_PROBE_TIMEOUT_SECONDS,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        engine_threads: int = DEFAULT_ENGINE_THREADS,
    ) -> None:
        """
        Args:
            host: engine address, ``unix:///path`` or ``tcp://host:port``; None to look for one.
            pull_insecure_registries: registry hosts (``host[:port]``) pulled from over plain
                HTTP. Podman is asked per pull; Docker decides itself (its daemon's
                ``insecure-registries``, which always include 127.0.0.0/8).
            registry_auth: registry host -> (user, password) for pulls.
            stop_grace_seconds: between SIGTERM and SIGKILL when a run times out.
            engine_threads: size of the pool for short engine calls (each running container
                also holds two threads of its own).
        """
        self._calls = CallPool(engine_threads)
        self._runs: dict[str, Run] = {}
        self._closed = False
        try:
            self._engine = connect(
                host, probe_timeout=probe_timeout_seconds, request_timeout=request_timeout_seconds
            )
        except BaseException:
            self._calls.shutdown()
            raise
        self._lifecycle = Lifecycle(
            self._engine,
            self._calls,
            ImagePuller(
                self._calls,
                insecure_registries=pull_insecure_registries,
                registry_auth=registry_auth,
            ),
            stop_grace_seconds=stop_grace_seconds,
            max_log_bytes=max_log_bytes,
            max_output_bytes=max_output_bytes,
        )
        log.info("container engine: %s", self._engine.url)

    @property
    def url(self) -> str:
        """The address of the engine in use."""
        return self._engine.url

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorUnavailable("the container executor is closed")

    async def aclose(self) -> None:
        """Waits for the removals under way (:meth:`settle`), stops following containers
        (they keep running) and closes the engine connection."""
        if self._closed:
            return
        self._closed = True
        await self.settle()
        self._lifecycle.close_streams()
        self._lifecycle.host.close()
        self._engine.api.close()
        self._calls.shutdown(cancel_futures=True)

    async def __aenter__(self) -> ContainerExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -----------------------------------------------------------------------------------------
    # The Executor protocol

    async def execute(
        self, spec: ContainerSpec, on_log: LogSink | None = None, *, keep: bool = False
    ) -> ContainerResult:
        """Pulls the image if missing, runs the container to its end, collects, removes it
        (``keep``: leaves a container that ran for :meth:`remove`).

        The timeout counts from the container's start (a pull does not use it up). The removal
        goes on after this returns (:meth:`settle` waits for it). See the module docstring for
        what cancelling the calling task does; an engine that stops answering leaves a started
        container too (ExecutorUnavailable says ``started``).
        """
        self._check_open()
        if spec.run_id in self._runs:
            return ContainerResult(exit_code=None, error=f"run {spec.run_id} is already executing")
        run = Run(spec.run_id)
        self._runs[spec.run_id] = run
        try:
            with unreachable_as_unavailable(self.url):
                return await self._lifecycle.execute(spec, run, on_log, keep_after=keep)
        except ExecutorUnavailable as exc:
            exc.started = run.started
            raise
        finally:
            del self._runs[spec.run_id]

    async def settle(self, wait_seconds: float = REMOVAL_WAIT_SECONDS) -> bool:
        """Waits up to ``wait_seconds`` for the containers of finished runs still being
        removed (``execute`` returns without waiting for it); False if some removal did not
        end in time (those containers are orphans for the next start)."""
        return await self._lifecycle.removals.settle(wait_seconds)

    async def ping(self) -> None:
        """The engine answers ``/_ping`` within the probe timeout, else ExecutorUnavailable."""
        self._check_open()
        # Bounded here too: with every pool thread stuck in calls to a wedged engine, the
        # ping would otherwise queue behind them.
        limit = self._engine.probe_timeout + 1
        try:
            await asyncio.wait_for(self._calls.call(self._engine.ping), limit)
        except TimeoutError:
            raise ExecutorUnavailable(
                f"the container engine at {self.url} did not answer within {limit}s"
            ) from None

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        """SIGTERM to the run's container, SIGKILL after ``grace_seconds``.

        Returns once the container has stopped (or was killed). For a run that this executor
        is executing but has not started yet, it is never started. False when no container of
        the run is running.
        """
        self._check_open()
        lifecycle = self._lifecycle
        with unreachable_as_unavailable(self.url):
            run = self._runs.get(run_id)
            if run is not None:
                if run.exited is not None and run.exited.done():
                    return False
                run.canceled = True
                run.cancel_grace = grace_seconds
                if run.started and run.container_id is not None:
                    await lifecycle.terminate(run.container_id, grace_seconds, run.exited)
                return True
            # Not ours (another process started it): stop it all the same.
            found = [c for c in await lifecycle.find(run_id) if c.get("State") == "running"]
            for container in found:
                await lifecycle.terminate(container["Id"], grace_seconds, None)
            return bool(found)

    async def recover(self, run_id: str, *, keep: bool = False) -> ContainerResult | None:
        """Finishes a run whose container outlived the process (or the engine connection)
        that started it.

        Waits for the container if it still runs (under what is left of its timeout), then
        collects its whole log and outputs and removes it (``keep``: leaves it for
        :meth:`remove`). A container that was created but never started is removed, with an
        error result. None when the run has no container.
        """
        self._check_open()
        if run_id in self._runs:
            raise RuntimeError(f"run {run_id} is being executed by this executor")
        lifecycle = self._lifecycle
        with unreachable_as_unavailable(self.url):
            containers = await lifecycle.find(run_id)
            if not containers:
                return None
            if len(containers) > 1:
                log.warning("run %s has %d containers; recovering one", run_id, len(containers))
            container_id: str = containers[0]["Id"]
            host_outputs = None
            run = Run(run_id, container_id=container_id)
            self._runs[run_id] = run
            kept = False
            try:
                info = await self._calls.call(self._engine.api.inspect_container, container_id)
                labels: Mapping[str, str] = info["Config"].get("Labels") or {}
                host_outputs = lifecycle.host.owns(labels.get(LABEL_HOST_OUTPUTS, ""))
                if info["State"]["Status"] in ("created", "configured"):
                    return ContainerResult(
                        exit_code=None, error="the container was created but never started"
                    )
                run.started = True
                # One that has exited did so in time (else it had been stopped); what is left
                # of the timeout applies to one still running.
                running = bool(info["State"].get("Running"))
                result = await lifecycle.collect(
                    run,
                    container_id,
                    limit_seconds=_remaining_timeout(labels, info["State"]) if running else None,
                    outputs_dir=labels.get(LABEL_OUTPUTS_DIR, _DEFAULT_OUTPUTS_DIR),
                    on_log=None,
                    host_outputs=host_outputs,
                )
                kept = keep
                return result
            except (asyncio.CancelledError, *ENGINE_LOST):
                kept = True
                raise
            finally:
                del self._runs[run_id]
                if not kept:
                    await asyncio.shield(lifecycle.remove(container_id))
                    if host_outputs is not None:
                        lifecycle.host.discard(host_outputs)

    async def remove(self, run_id: str) -> bool:
        """Removes the run's containers, whatever their state; False when one could not be
        removed (ExecutorUnavailable when the engine cannot be reached)."""
        self._check_open()
        with unreachable_as_unavailable(self.url):
            containers = await self._lifecycle.find(run_id)
        removed = []
        for container in containers:
            labels: Mapping[str, str] = container.get("Labels") or {}
            removed.append(await self._lifecycle.remove(container["Id"]))
            host_outputs = self._lifecycle.host.owns(labels.get(LABEL_HOST_OUTPUTS, ""))
            if removed[-1] and host_outputs is not None:
                self._lifecycle.host.discard(host_outputs)
        return all(removed)

    async def orphans(self) -> list[str]:
        """Run IDs of all containers labelled as this service's, in any state.

        Also removes the outputs directories (:mod:`~porter_bundle.executor.hostdir`) that no
        container and no run of this executor uses any more (left behind by a crash)."""
        self._check_open()
        with unreachable_as_unavailable(self.url):
            containers = await self._calls.call(
                self._engine.api.containers, all=True, filters={"label": f"{LABEL_MANAGED}=true"}
            )
        run_ids = sorted(
            r for r in {(c.get("Labels") or {}).get(LABEL_RUN_ID) for c in containers} if r
        )
        self._lifecycle.host.sweep([*run_ids, *self._runs])
        return run_ids


def _remaining_timeout(labels: Mapping[str, str], state: Mapping[str, Any]) -> float | None:
    """What is left of a recovered run's timeout, measured from its container's start."""
    try:
        timeout = float(labels[LABEL_TIMEOUT])
    except (KeyError, ValueError):
        return None
    started = _parse_engine_time(str(state.get("StartedAt", "")))
    if started is None:
        return timeout
    return max(0.0, timeout - (time.time() - started))


def _parse_engine_time(text: str) -> float | None:
    """Seconds since the epoch of an engine timestamp (RFC 3339 with nanoseconds)."""
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    seconds, fraction, zone = match.groups()
    try:
        parsed = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    return parsed.timestamp() + float(fraction or 0)
