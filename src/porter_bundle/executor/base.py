"""The executor boundary: what the service asks of a container engine, and what it gets back.

The service layer decides everything a run needs (image, environment, files, labels,
limits) and hands it over as a :class:`ContainerSpec`; an :class:`Executor` runs it
and reports a :class:`ContainerResult`. The container implementation speaks the Docker
Engine API (Docker or Podman); tests of the logic above may substitute a fake here
and only here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

# Label keys put on every container, so runs can be found again after a crash.
LABEL_RUN_ID = "sh.porter.bundle.run-id"
LABEL_INSTALLATION = "sh.porter.bundle.installation"
LABEL_MANAGED = "sh.porter.bundle.managed"

LogSink = Callable[[bytes], Awaitable[None]]

# The steps of a run's container an executor reports through phase(), in this order (files
# are copied only when the spec has some, outputs collected only when it has an outputs
# directory; a step that fails is the last before the removal).
PHASE_PULL = "image pull"
PHASE_CREATE = "container create"
PHASE_COPY_FILES = "copy files"
PHASE_START = "container start"
PHASE_WAIT = "container wait"
PHASE_OUTPUTS = "collect outputs"
PHASE_REMOVE = "container remove"

PhaseHook = Callable[[str], AbstractContextManager[object]]
"""Given a step's name, a context manager entered when the step begins and exited when it
ends (tracing: a child span of the run's span)."""


class _Steps:
    """The step in progress of one execution: each new one ends the one before."""

    def __init__(self, hook: PhaseHook) -> None:
        self._hook = hook
        self._current: AbstractContextManager[object] | None = None

    def begin(self, name: str) -> None:
        self.end(None)
        step = self._hook(name)
        step.__enter__()
        self._current = step

    def end(self, exc: BaseException | None) -> None:
        step, self._current = self._current, None
        if step is not None:
            step.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


_steps: ContextVar[_Steps | None] = ContextVar("porter_bundle_executor_steps", default=None)


@contextmanager
def reporting_phases(hook: PhaseHook | None) -> Iterator[None]:
    """Around an :meth:`Executor.execute` call: the steps it marks with :func:`phase` in this
    task (a context variable: no other run's) are spanned by ``hook``; the last one ends
    when the call does (with the exception that ends it, if one does). None: nothing."""
    if hook is None:
        yield
        return
    steps = _Steps(hook)
    token = _steps.set(steps)
    try:
        yield
    except BaseException as exc:
        steps.end(exc)
        raise
    else:
        steps.end(None)
    finally:
        _steps.reset(token)


def phase(name: str) -> None:
    """Marks the start of a step of the run the current task executes, and so the end of
    the step before (executors call it); a no-op unless the caller uses
    :func:`reporting_phases`."""
    steps = _steps.get()
    if steps is not None:
        steps.begin(name)


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run to completion."""

    run_id: str
    """The run this container executes; also the container's label and name suffix."""
    image: str
    """Image reference, e.g. ``localhost/hello:v1`` or ``example.com/app@sha256:...``."""
    image_digest: str = ""
    """The manifest digest the image must have (one of its registry digests); "" for none.
    A mismatch fails the run before a container is created."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables."""
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Files written into the container before it starts: absolute path -> content."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels (the executor adds LABEL_RUN_ID and LABEL_MANAGED itself)."""
    command: tuple[str, ...] = ("/cnab/app/run",)
    """What to execute (the CNAB entrypoint by default)."""
    network: str | None = None
    """Network mode; None means no network at all."""
    timeout_seconds: float | None = None
    """Wall-clock limit; on expiry the container is stopped and the result says timed_out."""
    outputs_dir: str = "/cnab/app/outputs"
    """Directory whose files are collected after the container exits (also on failure);
    "" when the action has no outputs, to skip reading them."""


@dataclass(frozen=True)
class ContainerResult:
    """How a container ended and what it left behind."""

    exit_code: int | None
    """The process's exit code; None if it never ran (the failure is in ``error``)."""
    logs: bytes = b""
    """Combined stdout and stderr."""
    outputs: Mapping[str, bytes] = field(default_factory=dict)
    """Files found under ``outputs_dir``: path relative to it -> content."""
    timed_out: bool = False
    """The timeout expired and the container was stopped."""
    canceled: bool = False
    """:meth:`Executor.cancel` stopped it."""
    error: str = ""
    """Why the container could not be run (image missing, engine refused, ...). No secrets."""
    image_digest: str = ""
    """The repo (manifest) digest of the image that ran, as the engine reports it; "" when
    it reports none or the run never got that far."""


class ExecutorUnavailable(Exception):
    """The container engine cannot be reached; the message says which sockets were tried."""

    started: bool = False
    """Raised by :meth:`Executor.execute`: whether the run's container had been started when
    the engine stopped answering (it may still run; :meth:`Executor.recover` finds it)."""


class Executor(Protocol):
    """Runs containers described by :class:`ContainerSpec`."""

    async def execute(
        self, spec: ContainerSpec, on_log: LogSink | None = None, *, keep: bool = False
    ) -> ContainerResult:
        """Creates, starts and waits for the container, collects logs and outputs, removes it
        (``keep``: leaves a container that ran for :meth:`remove`, once its result is recorded;
        else the removal may go on after it returns: :meth:`settle`).

        ``on_log`` receives log chunks as the container writes them. Never raises for
        container failures (they are in the result); raises ExecutorUnavailable when
        the engine cannot be reached, leaving a started container in place.
        """
        ...

    async def ping(self) -> None:
        """Returns when the engine answers (within a short timeout); ExecutorUnavailable,
        naming the engine, when it does not."""
        ...

    async def cancel(self, run_id: str, grace_seconds: float) -> bool:
        """SIGTERM to the run's container, SIGKILL after the grace period. False if none runs."""
        ...

    async def recover(self, run_id: str, *, keep: bool = False) -> ContainerResult | None:
        """After a restart, or once an engine that stopped answering answers again: waits for
        a container of this run that still exists and finishes it like :meth:`execute` would
        (its whole log, outputs, removal unless ``keep``). None when no container exists."""
        ...

    async def remove(self, run_id: str) -> bool:
        """Removes the run's containers, whatever their state; False when one could not be
        removed (ExecutorUnavailable when the engine cannot be reached)."""
        ...

    async def orphans(self) -> list[str]:
        """Run IDs of every container this service created that still exists."""
        ...

    async def settle(self, wait_seconds: float) -> bool:
        """Waits up to ``wait_seconds`` for the cleanup :meth:`execute` left running after it
        returned (removing containers); False if some did not end in time."""
        ...
