"""A run's container from creation to removal: create, copy files in, start, follow to the
exit (under a timeout), terminate, collect logs and outputs, remove.

:class:`Lifecycle` does the steps on one engine; the ``ContainerExecutor`` of
:mod:`porter_bundle.executor.container` decides when (its docstring says what cancelling a
run leaves behind).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from porter_bundle.executor._archive import files_tar, read_outputs
from porter_bundle.executor.base import (
    LABEL_MANAGED,
    LABEL_RUN_ID,
    PHASE_COPY_FILES,
    PHASE_CREATE,
    PHASE_OUTPUTS,
    PHASE_PULL,
    PHASE_REMOVE,
    PHASE_START,
    PHASE_WAIT,
    ContainerResult,
    ContainerSpec,
    LogSink,
    phase,
)
from porter_bundle.executor.bridge import CallPool, in_thread, post
from porter_bundle.executor.engine import Engine, describe, engine_words
from porter_bundle.executor.hostdir import LABEL_HOST_OUTPUTS, HostOutputs
from porter_bundle.executor.logs import LogPump, LogStream
from porter_bundle.executor.pulls import ImagePuller
from porter_bundle.executor.removals import Removals

log = logging.getLogger(__name__)

# What recover() needs to finish a run the way execute() would have, kept where it survives
# a restart of the service: on the container itself. Internal to this executor.
LABEL_OUTPUTS_DIR = "sh.porter.bundle.outputs-dir"
LABEL_TIMEOUT = "sh.porter.bundle.timeout-seconds"

CONTAINER_NAME_PREFIX = "porter-bundle-"

DEFAULT_STOP_GRACE_SECONDS = 5.0
"""Between SIGTERM and SIGKILL when a run times out."""
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024
"""Of the outputs directory, as the tar the engine sends."""

# A container that SIGKILL did not stop within this long is reported as stuck, not waited for.
KILL_WAIT_SECONDS = 30.0
# After the exit, how long the log stream may take to end by itself before it is cut and the
# rest of the log fetched in one piece (Podman notices the exit by polling, ~0.5 s here).
LOG_DRAIN_SECONDS = 5.0
# After an attached stream ends, how often and how many times to look for the exit to be
# recorded before falling back to the engine's wait (the end of the stream normally is it).
EXIT_SETTLE_SECONDS = 0.01
EXIT_SETTLE_POLLS = 200
# Between two looks at a container this process does not watch itself (see cancel()).
STATE_POLL_SECONDS = 0.1

# What an engine that stopped answering raises (a dropped connection, an unanswered request).
ENGINE_LOST = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)

_NAME_UNSAFE = re.compile(r"[^a-z0-9_.-]")


def container_name(run_id: str) -> str:
    """The container's name for a run: the prefix and the run ID, lowercased (engine rules)."""
    return CONTAINER_NAME_PREFIX + _NAME_UNSAFE.sub("-", run_id.lower())


@dataclass
class Run:
    """A run this executor is executing or recovering right now."""

    run_id: str
    container_id: str | None = None
    started: bool = False
    exited: asyncio.Future[int] | None = None
    canceled: bool = False
    cancel_grace: float = 0.0
    kept: bool = False
    """Left for recover() or remove() (the executing task was cancelled after the start, the
    engine stopped answering, or the caller keeps it until its result is recorded)."""
    stream_dropped: bool = False
    """The attached log stream ended while the process still ran (the engine restarted)."""


class Lifecycle:
    """The steps of a run's container on one engine; every engine call goes to ``calls``."""

    def __init__(
        self,
        engine: Engine,
        calls: CallPool,
        puller: ImagePuller,
        *,
        stop_grace_seconds: float,
        max_log_bytes: int,
        max_output_bytes: int,
    ) -> None:
        """
        Args:
            engine: the connected engine.
            calls: the pool that runs the short blocking engine calls.
            puller: gets a spec's image onto the engine first.
            stop_grace_seconds: between SIGTERM and SIGKILL when a run times out.
            max_log_bytes: kept in a result's ``logs`` (the consumer still sees everything).
            max_output_bytes: of the outputs directory, as the tar the engine sends.
        """
        self._engine = engine
        self._calls = calls
        self._puller = puller
        self._stop_grace = stop_grace_seconds
        self._max_log_bytes = max_log_bytes
        self._max_output_bytes = max_output_bytes
        self._streams: set[LogStream] = set()
        self.removals = Removals(self.remove)
        """The containers of finished runs being removed (execute() does not wait for it)."""
        self.host = HostOutputs(engine, calls)
        """Outputs directories on this file system, where the engine sees them."""

    def close_streams(self) -> None:
        """Stops following every container (they keep running)."""
        for stream in list(self._streams):
            stream.close()

    async def execute(
        self, spec: ContainerSpec, run: Run, on_log: LogSink | None, *, keep_after: bool = False
    ) -> ContainerResult:
        """Pulls, creates, starts, follows and collects the run's container, then removes it;
        kept when the calling task is cancelled or the engine stops answering after the start,
        and (``keep_after``) when it ran to its end."""
        try:
            archive = files_tar(spec.files) if spec.files else None
        except ValueError as exc:
            return ContainerResult(exit_code=None, error=str(exc))
        phase(PHASE_PULL)
        error, image_digest, image = await self._puller.ensure_image(
            self._engine, spec.image, spec.image_digest
        )
        if error:
            return ContainerResult(exit_code=None, error=error)
        if run.canceled:
            return ContainerResult(exit_code=None, canceled=True)
        host_outputs = await self.host.run_dir(spec, image)
        try:
            return await self._execute(
                spec, run, on_log, archive, image_digest, host_outputs, keep_after
            )
        finally:
            if host_outputs is not None and not run.kept:
                self.host.discard(host_outputs)

    async def _execute(
        self,
        spec: ContainerSpec,
        run: Run,
        on_log: LogSink | None,
        archive: bytes | None,
        image_digest: str,
        host_outputs: Path | None,
        keep_after: bool,
    ) -> ContainerResult:
        api = self._engine.api

        labels = {
            **spec.labels,
            LABEL_MANAGED: "true",
            LABEL_RUN_ID: spec.run_id,
            LABEL_OUTPUTS_DIR: spec.outputs_dir,
        }
        if spec.timeout_seconds is not None:
            labels[LABEL_TIMEOUT] = str(spec.timeout_seconds)
        mounted = self.host.mount(host_outputs, spec, archive) if host_outputs else None
        binds = None
        if mounted is not None:
            labels[LABEL_HOST_OUTPUTS] = str(host_outputs)
            binds, archive = mounted
        host_outputs = host_outputs if mounted is not None else None
        await self.removals.done(spec.run_id)  # the same run again: its name must be free
        try:
            phase(PHASE_CREATE)
            created = await self._calls.call(
                api.create_container,
                spec.image,
                # The entrypoint, not the command: an image's own ENTRYPOINT must not wrap it.
                entrypoint=list(spec.command),
                environment=dict(spec.env),
                labels=labels,
                name=container_name(spec.run_id),
                host_config=api.create_host_config(
                    network_mode=spec.network or "none", binds=binds
                ),
            )
        except docker.errors.APIError as exc:
            return ContainerResult(
                exit_code=None,
                error=f"creating a container of image {spec.image} failed: {engine_words(exc)}",
            )
        container_id: str = created["Id"]
        run.container_id = container_id
        keep = False
        try:
            # Attached before it starts, as `podman run` / `docker run` are: the stream ends
            # when the process does, which engines that poll for exits (Podman) report late.
            # The attach and the files copy are independent: both at once.
            stream = LogStream(api, container_id, attach=True)
            connecting = asyncio.ensure_future(self._calls.call(stream.connect))
            try:
                if archive is not None:
                    phase(PHASE_COPY_FILES)
                    await self._calls.call(api.put_archive, container_id, "/", archive)
                phase(PHASE_START)
                attached = await asyncio.shield(connecting)
                if run.canceled:
                    stream.discard()
                    return ContainerResult(exit_code=None, canceled=True)
                await self._calls.call(api.start, container_id)
            except BaseException:
                await asyncio.wait([connecting])
                stream.discard()
                raise
            run.started = True
            collected = await self.collect(
                run,
                container_id,
                limit_seconds=spec.timeout_seconds,
                outputs_dir=spec.outputs_dir,
                on_log=on_log,
                stream=stream if attached else None,
                host_outputs=host_outputs,
            )
            keep = run.kept = keep_after
            return dataclasses.replace(collected, image_digest=image_digest)
        except docker.errors.APIError as exc:
            return ContainerResult(
                exit_code=None,
                error=f"running a container of image {spec.image} failed: {engine_words(exc)}",
            )
        except (asyncio.CancelledError, *ENGINE_LOST):
            # Started: leave it to recover() (see the container module's docstring). Not
            # started: nothing to recover, so it goes. An engine that stopped answering
            # must not remove a container that still runs should it answer the removal.
            keep = run.kept = run.started
            raise
        finally:
            if not keep:
                phase(PHASE_REMOVE)
                self.removals.soon(spec.run_id, container_id)

    async def collect(
        self,
        run: Run,
        container_id: str,
        *,
        limit_seconds: float | None,
        outputs_dir: str,
        on_log: LogSink | None,
        stream: LogStream | None = None,
        host_outputs: Path | None = None,
    ) -> ContainerResult:
        """Follows a started container to its end, then reads its outputs.

        With an attached ``stream`` (opened before the start), the end of the stream marks the
        exit; otherwise the log is followed and the engine's wait reports the exit.
        """
        api = self._engine.api
        loop = asyncio.get_running_loop()
        short = container_id[:12]
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        attached = stream is not None
        stream = stream or LogStream(api, container_id)
        self._streams.add(stream)
        follower = in_thread(
            loop,
            f"porter-bundle-logs-{short}",
            functools.partial(stream.follow, functools.partial(post, loop, queue.put_nowait)),
        )
        # Set before the first await: cancel() relies on `exited` once `started` is true.
        exited: asyncio.Future[int]
        if attached:
            exited = run.exited = asyncio.ensure_future(
                self._exit_after(run, container_id, follower)
            )
        else:
            exited = run.exited = in_thread(
                loop,
                f"porter-bundle-wait-{short}",
                functools.partial(_wait_exit, api, container_id),
            )
        pump = LogPump(queue, on_log, self._max_log_bytes)
        pump_task = asyncio.create_task(pump.run())
        timed_out = False
        try:
            phase(PHASE_WAIT)
            if run.canceled:
                await self.terminate(container_id, run.cancel_grace, exited)
            done, _ = await asyncio.wait([exited], timeout=limit_seconds)
            if not done:
                timed_out = True
                await self.terminate(container_id, self._stop_grace, exited)
                done, _ = await asyncio.wait([exited], timeout=KILL_WAIT_SECONDS)
                if not done:
                    raise TimeoutError("the container did not stop after SIGKILL")
            exit_code = exited.result()

            drained, _ = await asyncio.wait([follower], timeout=LOG_DRAIN_SECONDS)
            if not drained:
                log.warning("log stream of container %s did not end after its exit", short)
                stream.close()
                # A follow request that never got its response headers (Podman sends none for
                # a silent container) cannot be cut: leave its daemon thread behind and end
                # the pump here; the whole log is fetched in one piece below.
                cut, _ = await asyncio.wait([follower], timeout=1.0)
                if not cut:
                    queue.put_nowait(None)
            await pump_task
            if not drained or run.stream_dropped:
                whole = await self._calls.call(api.logs, container_id)
                await pump.feed(whole[pump.total :])

            outputs: dict[str, bytes] = {}
            error = ""
            if outputs_dir:
                phase(PHASE_OUTPUTS)
                limit = self._max_output_bytes
                read = None
                if host_outputs is not None:
                    read = await self._calls.call(self.host.read, host_outputs, limit)
                if read is None:
                    read = await self._calls.call(
                        read_outputs, api, container_id, outputs_dir, limit
                    )
                outputs, error = read
            return ContainerResult(
                exit_code=exit_code,
                logs=pump.logs(),
                outputs=outputs,
                timed_out=timed_out,
                canceled=run.canceled,
                error=error,
            )
        except (docker.errors.APIError, TimeoutError) as exc:
            stream.close()
            await asyncio.wait([pump_task])
            return ContainerResult(
                exit_code=None,
                logs=pump.logs(),
                timed_out=timed_out,
                canceled=run.canceled,
                error=f"following container {short} failed: {engine_words(exc)}",
            )
        finally:
            stream.close()
            self._streams.discard(stream)
            pump_task.cancel()

    async def _exit_after(
        self, run: Run, container_id: str, stream_ended: asyncio.Future[None]
    ) -> int:
        """The exit code once an attached stream has ended (the process's end closes it)."""
        await asyncio.shield(stream_ended)
        for _ in range(EXIT_SETTLE_POLLS):
            info = await self._calls.call(self._engine.api.inspect_container, container_id)
            state = info["State"]
            if not state.get("Running"):
                return int(state.get("ExitCode", -1))
            await asyncio.sleep(EXIT_SETTLE_SECONDS)
        # A dropped stream, the process still running: the untimed wait, in a daemon thread;
        # what the stream missed is fetched once it has exited.
        wait = functools.partial(_wait_exit, self._engine.api, container_id)
        name = f"porter-bundle-wait-{container_id[:12]}"
        code = await in_thread(asyncio.get_running_loop(), name, wait)
        run.stream_dropped = True
        return code

    async def terminate(
        self, container_id: str, grace: float, exited: asyncio.Future[int] | None
    ) -> None:
        """SIGTERM, then SIGKILL if the container still runs after ``grace`` seconds.

        ``exited`` tells when a container this process follows has exited; None polls the
        engine instead. Signals rather than the engine's stop: its grace is whole seconds, and
        a stop request would hold a connection and a thread for the whole grace period.
        """
        if not await self._signal(container_id, "SIGTERM"):
            return
        if exited is not None:
            await asyncio.wait([exited], timeout=grace)
            if exited.done():
                return
        else:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while (left := deadline - loop.time()) > 0:
                if not await self._running(container_id):
                    return
                await asyncio.sleep(min(STATE_POLL_SECONDS, left))
        await self._signal(container_id, "SIGKILL")

    async def _signal(self, container_id: str, signal: str) -> bool:
        """False if the container is not running (any more): engines refuse to signal it."""
        try:
            await self._calls.call(self._engine.api.kill, container_id, signal=signal)
        except docker.errors.APIError as exc:
            # Docker answers 409, Podman 500 ("container state improper"); either way, check.
            if await self._running(container_id):
                raise
            log.debug("%s to %s: %s", signal, container_id[:12], engine_words(exc))
            return False
        return True

    async def _running(self, container_id: str) -> bool:
        try:
            info = await self._calls.call(self._engine.api.inspect_container, container_id)
        except docker.errors.NotFound:
            return False
        return bool(info["State"].get("Running"))

    async def remove(self, container_id: str) -> bool:
        """Removes a container, whatever its state; failures are logged, never raised (False).

        A container that could not be removed is still found by orphans() later.
        """
        try:
            await self._calls.call(self._engine.api.remove_container, container_id, force=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            log.warning("could not remove container %s: %s", container_id[:12], describe(exc))
            return False
        return True

    async def find(self, run_id: str) -> list[dict[str, Any]]:
        """The run's containers this service created, in any state."""
        containers: list[dict[str, Any]] = await self._calls.call(
            self._engine.api.containers,
            all=True,
            filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_RUN_ID}={run_id}"]},
        )
        return containers


def _wait_exit(api: docker.APIClient, container_id: str) -> int:
    status: Mapping[str, Any] = api.wait(container_id)
    return int(status["StatusCode"])
