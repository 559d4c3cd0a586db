"""Running invocation images: the executor interface and its container implementation.

``base`` is the boundary the service layer codes against (a fake may stand in for tests);
``container`` implements it on Docker or Podman, over ``engine`` (connecting), ``pulls``
(images), ``lifecycle`` (a container from creation to removal), ``logs`` (following a log)
and ``bridge`` (the threads the blocking SDK runs in). ``kubernetes`` implements it as a
Kubernetes Job per run, over ``jobs`` (a run as a Job and its Secret), ``job_outputs`` (the
outputs sidecar), ``kube_client`` (the API), ``kube_objects`` (a run's objects), ``kube_state`` (reading Job and pod status) and
``kube_logs`` (following a pod's log across reconnects); it is imported on demand (it brings
the Kubernetes client).
"""

from typing import TYPE_CHECKING, Any

from porter_bundle.executor.base import (
    LABEL_INSTALLATION,
    LABEL_MANAGED,
    LABEL_RUN_ID,
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
    LogSink,
    PhaseHook,
    phase,
    reporting_phases,
)

if TYPE_CHECKING:
    from porter_bundle.executor.container import ContainerExecutor
    from porter_bundle.executor.engine import default_hosts
    from porter_bundle.executor.lifecycle import container_name

# Imported when first used, so that the outputs sidecar (``python -m
# porter_bundle.executor.job_outputs``, standard library only) starts without the Docker SDK.
_LAZY = {
    "ContainerExecutor": "porter_bundle.executor.container",
    "default_hosts": "porter_bundle.executor.engine",
    "container_name": "porter_bundle.executor.lifecycle",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LABEL_INSTALLATION",
    "LABEL_MANAGED",
    "LABEL_RUN_ID",
    "ContainerExecutor",
    "ContainerResult",
    "ContainerSpec",
    "Executor",
    "ExecutorUnavailable",
    "LogSink",
    "PhaseHook",
    "container_name",
    "default_hosts",
    "phase",
    "reporting_phases",
]
