"""Running invocation images: the executor interface and its container implementation."""

from porter_bundle.executor.base import (
    ContainerResult,
    ContainerSpec,
    Executor,
    ExecutorUnavailable,
)

__all__ = ["ContainerResult", "ContainerSpec", "Executor", "ExecutorUnavailable"]
