"""The container executor: runs a :class:`ContainerSpec` on a Docker Engine API server.

The same code drives Docker and Podman (its Docker-compatible service). It uses the
synchronous ``docker`` SDK, so every engine call runs in a thread:

- short calls (inspect, create, start, kill, archives, pulls) go to a small pool owned by
  the executor, so they never compete with the application's default executor;
- each running container holds two daemon threads for its lifetime: one follows its log
  (the only way the SDK streams), one blocks in the engine's ``wait``. A thread that only
  waits on a socket costs little, the service bounds how many runs are active, and the
  alternative (polling the container state) would cost the engine a request per run every
  few hundred milliseconds. Daemon threads, because a still-running container must never
  keep the process from exiting.

If the task running :meth:`ContainerExecutor.execute` is cancelled once the container has
started (the service is shutting down), the container is left running on purpose: a new
process finds it with :meth:`~ContainerExecutor.orphans` and finishes it with
:meth:`~ContainerExecutor.recover`. Every other way out of ``execute`` removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import docker
import docker.auth
import docker.errors
import docker.utils
import requests
from docker.constants import DEFAULT_DOCKER_API_VERSION
from docker.types.daemon import CancellableStream

from porter_bundle.executor._archive import files_tar, outputs_from_tar
from porter_bundle.executor.base import (
    LABEL_MANAGED,
    LABEL_RUN_ID,
    ContainerResult,
    ContainerSpec,
    ExecutorUnavailable,
    LogSink,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# What recover() needs to finish a run the way execute() would have, kept where it survives
# a restart of the service: on the container itself. Internal to this executor.
LABEL_OUTPUTS_DIR = "sh.porter.bundle.outputs-dir"
LABEL_TIMEOUT = "sh.porter.bundle.timeout-seconds"

CONTAINER_NAME_PREFIX = "porter-bundle-"

DEFAULT_STOP_GRACE_SECONDS = 5.0
"""Between SIGTERM and SIGKILL when a run times out."""
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60
"""For every engine call that is not a stream, a pull or a wait."""
DEFAULT_PROBE_TIMEOUT_SECONDS = 5
"""For trying one engine address."""
DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024
"""Kept in ``ContainerResult.logs``; ``on_log`` still sees everything."""
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024
"""Of the outputs directory, as the tar the engine sends."""
DEFAULT_ENGINE_THREADS = 8
"""Threads for short engine calls (long waits have threads of their own)."""

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
# How much of an engine's error message goes into a result.
MAX_ERROR_CHARS = 1000

_DEFAULT_OUTPUTS_DIR = ContainerSpec(run_id="", image="").outputs_dir
_NAME_UNSAFE = re.compile(r"[^a-z0-9_.-]")


def container_name(run_id: str) -> str:
    """The container's name for a run: the prefix and the run ID, lowercased (engine rules)."""
    return CONTAINER_NAME_PREFIX + _NAME_UNSAFE.sub("-", run_id.lower())


def default_hosts() -> list[str]:
    """Where an engine usually listens, in the order they are tried when no host is given."""
    hosts = []
    if os.environ.get("DOCKER_HOST"):
        hosts.append(os.environ["DOCKER_HOST"])
    hosts.append("unix:///var/run/docker.sock")
    if os.environ.get("XDG_RUNTIME_DIR"):
        hosts.append(f"unix://{os.environ['XDG_RUNTIME_DIR']}/podman/podman.sock")
    hosts.append("unix:///run/podman/podman.sock")
    return list(dict.fromkeys(hosts))


@dataclass
class _Run:
    """A run this executor is executing or recovering right now."""

    run_id: str
    container_id: str | None = None
    started: bool = False
    exited: asyncio.Future[int] | None = None
    canceled: bool = False
    cancel_grace: float = 0.0


@dataclass
class _Engine:
    """A connected engine."""

    api: docker.APIClient
    url: str
    libpod_version: str | None
    """Podman's own API version when the engine is Podman (its native endpoints need it)."""


class ContainerExecutor:
    """Runs containers through the Docker Engine API of Docker or Podman.

    The constructor connects, blocking (build it in a thread from async code): to ``host``
    if given, else to the first that answers of ``DOCKER_HOST`` and the usual Docker and
    Podman sockets (:func:`default_hosts`); ExecutorUnavailable, listing every address tried
    and why it failed, when none does. Close it with :meth:`aclose` (or ``async with``).
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
        """
        self._insecure = frozenset(pull_insecure_registries)
        self._auth = dict(registry_auth or {})
        self._stop_grace = stop_grace_seconds
        self._request_timeout = request_timeout_seconds
        self._probe_timeout = probe_timeout_seconds
        self._max_log_bytes = max_log_bytes
        self._max_output_bytes = max_output_bytes
        self._calls = ThreadPoolExecutor(
            max_workers=engine_threads, thread_name_prefix="porter-bundle-engine"
        )
        self._pull_locks: dict[str, asyncio.Lock] = {}
        self._runs: dict[str, _Run] = {}
        self._streams: set[_LogStream] = set()
        self._closed = False
        try:
            self._engine = self._probe_all(host)
        except BaseException:
            self._calls.shutdown(wait=False)
            raise
        log.info("container engine: %s", self._engine.url)

    @property
    def url(self) -> str:
        """The address of the engine in use."""
        return self._engine.url

    # -----------------------------------------------------------------------------------------
    # Connection

    def _probe_all(self, host: str | None) -> _Engine:
        hosts = [host] if host else default_hosts()
        failures = []
        for url in hosts:
            try:
                return self._probe(url)
            except Exception as exc:
                failures.append(f"{url} ({_describe(exc)})")
        raise ExecutorUnavailable("no container engine answered; tried: " + "; ".join(failures))

    def _probe(self, url: str) -> _Engine:
        if url.startswith("unix://"):
            # Checked here first: the SDK leaks the socket of a failed connect (ResourceWarning),
            # and this names the failure plainly.
            path = url.removeprefix("unix://")
            if not os.path.exists(path):
                raise FileNotFoundError("no such socket")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(self._probe_timeout)
                probe.connect(path)
        kwargs: dict[str, Any] = {}
        if url == os.environ.get("DOCKER_HOST"):
            # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH go with DOCKER_HOST, as for the docker CLI.
            kwargs = dict(docker.utils.kwargs_from_env())
        kwargs["base_url"] = url
        # Only /_ping: its headers give the API version and whether this is Podman, where
        # /version costs most of a second (Podman runs conmon and the OCI runtime to answer).
        # The short timeout keeps a dead TCP address from holding up the next candidate.
        with (
            docker.APIClient(
                version=DEFAULT_DOCKER_API_VERSION, timeout=self._probe_timeout, **kwargs
            ) as probe_api,
            probe_api.get(f"{probe_api.base_url}/_ping") as response,
        ):
            if response.status_code != 200:
                raise ConnectionError(f"/_ping answered HTTP {response.status_code}")
            server_version = response.headers.get("Api-Version")
            libpod_version = response.headers.get("Libpod-Api-Version")
        return _Engine(
            docker.APIClient(
                version=_common_api_version(server_version),
                timeout=self._request_timeout,
                # Each active run holds two connections (log stream, wait) beside short calls.
                max_pool_size=64,
                **kwargs,
            ),
            url,
            libpod_version,
        )

    def _live(self) -> _Engine:
        if self._closed:
            raise ExecutorUnavailable("the container executor is closed")
        return self._engine

    async def aclose(self) -> None:
        """Stops following containers (they keep running) and closes the engine connection."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream.close()
        self._engine.api.close()
        self._calls.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> ContainerExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs a blocking engine call in the executor's pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._calls, functools.partial(fn, *args, **kwargs))

    @contextlib.contextmanager
    def _unreachable_as_unavailable(self) -> Iterator[None]:
        """An engine that stops answering mid-way is ExecutorUnavailable, as one never reached."""
        try:
            yield
        except requests.exceptions.ConnectionError as exc:
            raise ExecutorUnavailable(
                f"the container engine at {self.url} stopped answering: {_describe(exc)}"
            ) from exc

    # -----------------------------------------------------------------------------------------
    # The Executor protocol

    async def execute(self, spec: ContainerSpec, on_log: LogSink | None = None) -> ContainerResult:
        """Pulls the image if missing, runs the container to its end, collects, removes it.

        The timeout counts from the container's start (a pull does not use it up). See the
        module docstring for what cancelling the calling task does.
        """
        engine = self._live()
        if spec.run_id in self._runs:
            return ContainerResult(exit_code=None, error=f"run {spec.run_id} is already executing")
        run = _Run(spec.run_id)
        self._runs[spec.run_id] = run
        try:
            with self._unreachable_as_unavailable():
                return await self._execute(engine, spec, run, on_log)
        finally:
            del self._runs[spec.run_id]

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        """SIGTERM to the run's container, SIGKILL after ``grace_seconds``.

        Returns once the container has stopped (or was killed). For a run that this executor
        is executing but has not started yet, it is never started. False when no container of
        the run is running.
        """
        engine = self._live()
        with self._unreachable_as_unavailable():
            run = self._runs.get(run_id)
            if run is not None:
                if run.exited is not None and run.exited.done():
                    return False
                run.canceled = True
                run.cancel_grace = grace_seconds
                if run.started and run.container_id is not None:
                    await self._terminate(engine, run.container_id, grace_seconds, run.exited)
                return True
            # Not ours (another process started it): stop it all the same.
            found = [c for c in await self._find(engine, run_id) if c.get("State") == "running"]
            for container in found:
                await self._terminate(engine, container["Id"], grace_seconds, None)
            return bool(found)

    async def recover(self, run_id: str) -> ContainerResult | None:
        """Finishes a run whose container outlived the process that started it.

        Waits for the container if it still runs (under what is left of its timeout), then
        collects its whole log and outputs and removes it. A container that was created but
        never started is removed, with an error result. None when the run has no container.
        """
        engine = self._live()
        if run_id in self._runs:
            raise RuntimeError(f"run {run_id} is being executed by this executor")
        with self._unreachable_as_unavailable():
            containers = await self._find(engine, run_id)
            if not containers:
                return None
            if len(containers) > 1:
                log.warning("run %s has %d containers; recovering one", run_id, len(containers))
            container_id: str = containers[0]["Id"]
            run = _Run(run_id, container_id=container_id)
            self._runs[run_id] = run
            keep = False
            try:
                info = await self._call(engine.api.inspect_container, container_id)
                if info["State"]["Status"] in ("created", "configured"):
                    return ContainerResult(
                        exit_code=None, error="the container was created but never started"
                    )
                labels: Mapping[str, str] = info["Config"].get("Labels") or {}
                run.started = True
                return await self._collect(
                    engine,
                    run,
                    container_id,
                    limit_seconds=_remaining_timeout(labels, info["State"]),
                    outputs_dir=labels.get(LABEL_OUTPUTS_DIR, _DEFAULT_OUTPUTS_DIR),
                    on_log=None,
                )
            except asyncio.CancelledError:
                keep = True
                raise
            finally:
                del self._runs[run_id]
                if not keep:
                    await asyncio.shield(self._remove(engine, container_id))

    async def orphans(self) -> list[str]:
        """Run IDs of all containers labelled as this service's, in any state."""
        engine = self._live()
        with self._unreachable_as_unavailable():
            containers = await self._call(
                engine.api.containers, all=True, filters={"label": f"{LABEL_MANAGED}=true"}
            )
        run_ids = {(c.get("Labels") or {}).get(LABEL_RUN_ID) for c in containers}
        return sorted(r for r in run_ids if r)

    # -----------------------------------------------------------------------------------------
    # Running

    async def _execute(
        self, engine: _Engine, spec: ContainerSpec, run: _Run, on_log: LogSink | None
    ) -> ContainerResult:
        api = engine.api
        try:
            archive = files_tar(spec.files) if spec.files else None
        except ValueError as exc:
            return ContainerResult(exit_code=None, error=str(exc))
        error = await self._ensure_image(engine, spec.image)
        if error:
            return ContainerResult(exit_code=None, error=error)
        if run.canceled:
            return ContainerResult(exit_code=None, canceled=True)

        labels = {
            **spec.labels,
            LABEL_MANAGED: "true",
            LABEL_RUN_ID: spec.run_id,
            LABEL_OUTPUTS_DIR: spec.outputs_dir,
        }
        if spec.timeout_seconds is not None:
            labels[LABEL_TIMEOUT] = str(spec.timeout_seconds)
        try:
            created = await self._call(
                api.create_container,
                spec.image,
                # The entrypoint, not the command: an image's own ENTRYPOINT must not wrap it.
                entrypoint=list(spec.command),
                environment=dict(spec.env),
                labels=labels,
                name=container_name(spec.run_id),
                host_config=api.create_host_config(network_mode=spec.network or "none"),
            )
        except docker.errors.APIError as exc:
            return ContainerResult(
                exit_code=None,
                error=f"creating a container of image {spec.image} failed: {_engine_words(exc)}",
            )
        container_id: str = created["Id"]
        run.container_id = container_id
        keep = False
        try:
            if archive is not None:
                await self._call(api.put_archive, container_id, "/", archive)
            if run.canceled:
                return ContainerResult(exit_code=None, canceled=True)
            # Attached before it starts, as `podman run` / `docker run` are: the stream ends
            # when the process does, which engines that poll for exits (Podman) report late.
            stream = _LogStream(api, container_id, attach=True)
            attached = await self._call(stream.connect)
            try:
                await self._call(api.start, container_id)
            except BaseException:
                stream.discard()
                raise
            run.started = True
            return await self._collect(
                engine,
                run,
                container_id,
                limit_seconds=spec.timeout_seconds,
                outputs_dir=spec.outputs_dir,
                on_log=on_log,
                stream=stream if attached else None,
            )
        except docker.errors.APIError as exc:
            return ContainerResult(
                exit_code=None,
                error=f"running a container of image {spec.image} failed: {_engine_words(exc)}",
            )
        except asyncio.CancelledError:
            # Started: leave it to recover() (see the module docstring). Not started: nothing
            # to recover, so it goes.
            keep = run.started
            raise
        finally:
            if not keep:
                await asyncio.shield(self._remove(engine, container_id))

    async def _collect(
        self,
        engine: _Engine,
        run: _Run,
        container_id: str,
        *,
        limit_seconds: float | None,
        outputs_dir: str,
        on_log: LogSink | None,
        stream: _LogStream | None = None,
    ) -> ContainerResult:
        """Follows a started container to its end, then reads its outputs.

        With an attached ``stream`` (opened before the start), the end of the stream marks the
        exit; otherwise the log is followed and the engine's wait reports the exit.
        """
        api = engine.api
        loop = asyncio.get_running_loop()
        short = container_id[:12]
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        attached = stream is not None
        stream = stream or _LogStream(api, container_id)
        self._streams.add(stream)
        follower = _in_thread(
            loop,
            f"porter-bundle-logs-{short}",
            functools.partial(stream.follow, functools.partial(_post, loop, queue.put_nowait)),
        )
        # Set before the first await: cancel() relies on `exited` once `started` is true.
        exited: asyncio.Future[int]
        if attached:
            exited = run.exited = asyncio.ensure_future(
                self._exit_after(engine, container_id, follower)
            )
        else:
            exited = run.exited = _in_thread(
                loop,
                f"porter-bundle-wait-{short}",
                functools.partial(_wait_exit, api, container_id),
            )
        pump = _LogPump(queue, on_log, self._max_log_bytes)
        pump_task = asyncio.create_task(pump.run())
        timed_out = False
        try:
            if run.canceled:
                await self._terminate(engine, container_id, run.cancel_grace, exited)
            done, _ = await asyncio.wait([exited], timeout=limit_seconds)
            if not done:
                timed_out = True
                await self._terminate(engine, container_id, self._stop_grace, exited)
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
            if not drained:
                whole = await self._call(api.logs, container_id)
                await pump.feed(whole[pump.total :])

            outputs: dict[str, bytes] = {}
            error = ""
            if outputs_dir:
                outputs, error = await self._call(
                    _read_outputs, api, container_id, outputs_dir, self._max_output_bytes
                )
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
                error=f"following container {short} failed: {_engine_words(exc)}",
            )
        finally:
            stream.close()
            self._streams.discard(stream)
            pump_task.cancel()

    async def _exit_after(
        self, engine: _Engine, container_id: str, stream_ended: asyncio.Future[None]
    ) -> int:
        """The exit code once an attached stream has ended (the process's end closes it)."""
        await asyncio.shield(stream_ended)
        for _ in range(EXIT_SETTLE_POLLS):
            state = (await self._call(engine.api.inspect_container, container_id))["State"]
            if not state.get("Running"):
                return int(state.get("ExitCode", -1))
            await asyncio.sleep(EXIT_SETTLE_SECONDS)
        # The stream ended while the process still runs (a dropped connection): ask the engine.
        return await self._call(_wait_exit, engine.api, container_id)

    async def _terminate(
        self,
        engine: _Engine,
        container_id: str,
        grace: float,
        exited: asyncio.Future[int] | None,
    ) -> None:
        """SIGTERM, then SIGKILL if the container still runs after ``grace`` seconds.

        Signals rather than the engine's stop: its grace is whole seconds, and a stop request
        would hold a connection and a thread for the whole grace period.
        """
        if not await self._signal(engine, container_id, "SIGTERM"):
            return
        if exited is not None:
            await asyncio.wait([exited], timeout=grace)
            if exited.done():
                return
        else:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while (left := deadline - loop.time()) > 0:
                if not await self._running(engine, container_id):
                    return
                await asyncio.sleep(min(STATE_POLL_SECONDS, left))
        await self._signal(engine, container_id, "SIGKILL")

    async def _signal(self, engine: _Engine, container_id: str, signal: str) -> bool:
        """False if the container is not running (any more): engines refuse to signal it."""
        try:
            await self._call(engine.api.kill, container_id, signal=signal)
        except docker.errors.APIError as exc:
            # Docker answers 409, Podman 500 ("container state improper"); either way, check.
            if await self._running(engine, container_id):
                raise
            log.debug("%s to %s: %s", signal, container_id[:12], _engine_words(exc))
            return False
        return True

    async def _running(self, engine: _Engine, container_id: str) -> bool:
        try:
            info = await self._call(engine.api.inspect_container, container_id)
        except docker.errors.NotFound:
            return False
        return bool(info["State"].get("Running"))

    async def _remove(self, engine: _Engine, container_id: str) -> None:
        """Removes a container, whatever its state; failures are logged, never raised.

        A container that could not be removed is still found by orphans() later.
        """
        try:
            await self._call(engine.api.remove_container, container_id, force=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            log.warning("could not remove container %s: %s", container_id[:12], _describe(exc))

    async def _find(self, engine: _Engine, run_id: str) -> list[dict[str, Any]]:
        containers: list[dict[str, Any]] = await self._call(
            engine.api.containers,
            all=True,
            filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_RUN_ID}={run_id}"]},
        )
        return containers

    # -----------------------------------------------------------------------------------------
    # Images

    async def _ensure_image(self, engine: _Engine, image: str) -> str:
        """Pulls the image unless the engine has it; returns an error message or ""."""
        # One pull per image at a time: runs of the same bundle started together wait for
        # the first pull instead of each starting their own.
        lock = self._pull_locks.setdefault(image, asyncio.Lock())
        async with lock:
            try:
                await self._call(engine.api.inspect_image, image)
                return ""
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                return f"inspecting image {image} failed: {_engine_words(exc)}"
            error = await self._call(self._pull, engine, image)
            if error:
                return f"pulling image {image} failed: {self._scrub(error)}"
            return ""

    def _pull(self, engine: _Engine, image: str) -> str:
        """Pulls in the calling thread; returns the engine's error message or ""."""
        try:
            registry, _ = docker.auth.resolve_repository_name(
                docker.utils.parse_repository_tag(image)[0]
            )
        except docker.errors.DockerException as exc:
            return _engine_words(exc)
        credentials = self._auth.get(registry)
        auth_config = (
            {"username": credentials[0], "password": credentials[1], "serveraddress": registry}
            if credentials
            else None
        )
        try:
            if registry in self._insecure and engine.libpod_version is not None:
                return _libpod_pull(engine, image, auth_config)
            messages = engine.api.pull(image, stream=True, decode=True, auth_config=auth_config)
            # A failed pull still answers 200: the error is the stream's last message.
            for message in messages:
                if isinstance(message, dict) and message.get("error"):
                    return str(message.get("errorDetail", {}).get("message") or message["error"])
        except docker.errors.APIError as exc:
            return _engine_words(exc)
        try:
            engine.api.inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            return "the engine reported no error, yet does not have the image"
        return ""

    def _scrub(self, text: str) -> str:
        """Engines do not echo passwords, but a result must never carry one: make sure."""
        for _, password in self._auth.values():
            if password:
                text = text.replace(password, "***")
        return text


# ---------------------------------------------------------------------------------------------
# Helpers


def _libpod_pull(engine: _Engine, image: str, auth_config: dict[str, str] | None) -> str:
    """Pulls through Podman's native endpoint, which (unlike its Docker-compatible
    /images/create) takes ``tlsVerify=false`` for a registry over plain HTTP."""
    headers = {"X-Registry-Auth": docker.auth.encode_header(auth_config)} if auth_config else {}
    url = f"{engine.api.base_url}/v{engine.libpod_version}/libpod/images/pull"
    with engine.api.post(
        url,
        params={"reference": image, "tlsVerify": "false"},
        headers=headers,
        stream=True,
        timeout=None,
    ) as response:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                return response.text or f"HTTP {response.status_code}"
            return str(body.get("message") or body.get("cause") or body)
        for line in response.iter_lines():
            if not line:
                continue
            message = json.loads(line)
            if isinstance(message, dict) and message.get("error"):
                return str(message["error"])
    return ""


def _common_api_version(server: str | None) -> str:
    """The newest API version both the SDK and the server speak."""
    if not server:
        return DEFAULT_DOCKER_API_VERSION
    try:
        newer = tuple(map(int, server.split("."))) >= tuple(
            map(int, DEFAULT_DOCKER_API_VERSION.split("."))
        )
    except ValueError:
        return DEFAULT_DOCKER_API_VERSION
    return DEFAULT_DOCKER_API_VERSION if newer else server


def _wait_exit(api: docker.APIClient, container_id: str) -> int:
    status: Mapping[str, Any] = api.wait(container_id)
    return int(status["StatusCode"])


def _read_outputs(
    api: docker.APIClient, container_id: str, path: str, limit: int
) -> tuple[dict[str, bytes], str]:
    """The outputs directory's files and an error message ("" if none); runs in a thread."""
    try:
        chunks, _ = api.get_archive(container_id, path)
    except docker.errors.NotFound:
        return {}, ""
    except docker.errors.APIError as exc:
        return {}, f"reading the outputs in {path} failed: {_engine_words(exc)}"
    data = bytearray()
    too_big = False
    # Read to the end even when over the limit: an abandoned stream leaks its connection.
    for chunk in chunks:
        if not too_big:
            data += chunk
            too_big = len(data) > limit
            if too_big:
                data = bytearray()
    if too_big:
        return {}, f"the outputs in {path} exceed {limit} bytes"
    try:
        return outputs_from_tar(bytes(data)), ""
    except Exception as exc:
        return {}, f"the outputs in {path} could not be read: {_describe(exc)}"


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


def _engine_words(exc: BaseException) -> str:
    """The engine's own explanation of a failure, shortened."""
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = str(exc.explanation)
    else:
        text = str(exc) or type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR_CHARS] if text else type(exc).__name__


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    """Hands a call to the event loop from a thread; dropped if the loop has closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _in_thread(
    loop: asyncio.AbstractEventLoop, name: str, fn: Callable[[], T]
) -> asyncio.Future[T]:
    """Runs ``fn`` in a daemon thread of its own; its result arrives in the returned future."""
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def main() -> None:
        try:
            result = fn()
        except BaseException as exc:
            _post(loop, settle, None, exc)
        else:
            _post(loop, settle, result, None)

    # Nobody may be left to look at a failure once a run is detached: keep asyncio quiet.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    threading.Thread(target=main, name=name, daemon=True).start()
    return future


class _LogStream:
    """A container's log, followed in a thread; :meth:`close` cuts it from any thread."""

    def __init__(self, api: docker.APIClient, container_id: str, *, attach: bool = False) -> None:
        self._api = api
        self._container_id = container_id
        self._attach = attach
        self._lock = threading.Lock()
        self._stream: CancellableStream[bytes] | None = None
        self._opened: CancellableStream[bytes] | None = None
        self._closed = False

    def connect(self) -> bool:
        """Attaches to the (not yet started) container now; False if the engine refuses."""
        try:
            self._opened = self._api.attach(
                self._container_id, stdout=True, stderr=True, stream=True, logs=True
            )
        except Exception as exc:
            log.info(
                "attaching to %s failed, following its log instead: %s",
                self._container_id[:12],
                _describe(exc),
            )
            return False
        return True

    def discard(self) -> None:
        """Releases an attached stream that will never be followed (the start failed)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            _release(opened)

    def follow(self, deliver: Callable[[bytes | None], None]) -> None:
        """Delivers each chunk as it comes, then None; runs until the log ends or is closed."""
        stream: CancellableStream[bytes] | None = None
        try:
            stream = self._opened or self._api.logs(self._container_id, stream=True, follow=True)
            with self._lock:
                if self._closed:
                    return
                self._stream = stream
            for chunk in stream:
                deliver(chunk)
        except Exception as exc:
            if not self._closed:
                log.warning("log stream of %s failed: %s", self._container_id[:12], _describe(exc))
        finally:
            if stream is not None:
                with self._lock:
                    self._stream = None
                    _release(stream)
            deliver(None)

    def close(self) -> None:
        """Cuts the stream: the thread in :meth:`follow` wakes up and returns."""
        with self._lock:
            self._closed = True
            if self._stream is not None:
                with contextlib.suppress(Exception):
                    self._stream.close()


def _release(stream: CancellableStream[bytes]) -> None:
    """Closes a log stream for good.

    The SDK's ``close()`` shuts the socket down but leaves the HTTP response open; the
    socket's file descriptor then lives on until garbage collection, which warns about it.
    """
    with contextlib.suppress(Exception):
        stream.close()
    response = getattr(stream, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


@dataclass
class _LogPump:
    """Takes log chunks off the queue in order: keeps them (up to a limit), passes them on."""

    queue: asyncio.Queue[bytes | None]
    sink: LogSink | None
    limit: int
    total: int = 0
    _kept: list[bytes] = field(default_factory=list)
    _kept_size: int = 0

    async def run(self) -> None:
        while (chunk := await self.queue.get()) is not None:
            await self.feed(chunk)

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total += len(chunk)
        room = self.limit - self._kept_size
        if room > 0:
            self._kept.append(chunk[:room])
            self._kept_size += min(room, len(chunk))
        if self.sink is not None:
            try:
                await self.sink(chunk)
            except Exception:
                # A failing consumer must not fail the run; it gets nothing more, though.
                log.exception("the log consumer failed; it gets no more of this run's log")
                self.sink = None

    def logs(self) -> bytes:
        kept = b"".join(self._kept)
        if self.total > self._kept_size:
            kept += f"\n[log truncated: {self.total - self._kept_size} more bytes]\n".encode()
        return kept
