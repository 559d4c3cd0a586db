"""How a run ends, from its container's result: the state, the message and why it failed."""

from __future__ import annotations

from porter.bundle.v1.run_pb2 import RUN_STATE_CANCELED, RUN_STATE_FAILED, RUN_STATE_SUCCEEDED
from porter_bundle.executor import ContainerResult
from porter_bundle.service.observe import Kind


def verdict(
    result: ContainerResult, missing: list[str], canceled: bool, timeout_seconds: float
) -> tuple[int, str, Kind | None, str]:
    """(state, message, event kind or None for the state's own, cause) of a run whose
    container ended with ``result``; ``missing``: the required outputs it did not write,
    ``canceled``: CancelRun reached it."""
    if result.canceled or canceled:
        return RUN_STATE_CANCELED, "canceled", None, ""
    if result.timed_out:
        message = f"timed out after {timeout_seconds:g}s"
        if result.error:  # the engine's own words, e.g. Kubernetes' DeadlineExceeded
            message += f" ({result.error})"
        return RUN_STATE_FAILED, message, Kind.TIMED_OUT, "timeout"
    if result.error:
        return RUN_STATE_FAILED, result.error, None, "container_error"
    if result.exit_code != 0:
        message = f"the invocation image exited with status {result.exit_code}"
        return RUN_STATE_FAILED, message, None, "exit_code"
    if missing:
        return RUN_STATE_FAILED, "; ".join(missing), None, "missing_outputs"
    return RUN_STATE_SUCCEEDED, "", None, ""


__all__ = ["verdict"]
