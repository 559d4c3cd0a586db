"""The one exit status table of every ``porter-bundle`` command, and how errors map to it."""

from __future__ import annotations

from enum import IntEnum

import grpc


class Exit(IntEnum):
    """Exit statuses, the same for every command."""

    OK = 0
    REFUSED = 1
    USAGE = 2
    UNREACHABLE = 3
    ACTION_FAILED = 4
    INTERRUPTED = 130


TABLE = (
    (Exit.OK, "ok"),
    (Exit.REFUSED, "refused (by the server, a registry or a document check)"),
    (Exit.USAGE, "bad usage or settings"),
    (Exit.UNREACHABLE, "cannot reach the server"),
    (Exit.ACTION_FAILED, "the action ran and failed (or was canceled)"),
    (Exit.INTERRUPTED, "interrupted"),
)

EPILOG = "Exit status: " + "; ".join(f"{int(code)} {text}" for code, text in TABLE) + "."

# Codes that mean the call never got an answer from a server.
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def of_rpc_error(error: grpc.RpcError) -> Exit:
    """The exit status of a failed call. UNAVAILABLE that the server itself sent about one of
    its dependencies (a container engine, a registry: its ErrorInfo says so) is a refusal; a
    server shutting down, or none answering, is unreachable."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    if code not in _UNREACHABLE:
        return Exit.REFUSED
    reason = _reason(error)
    return Exit.REFUSED if reason and reason != "SERVER_SHUTTING_DOWN" else Exit.UNREACHABLE


def _reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason the server sent with an error ("" when none)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (AttributeError, ValueError):
        return ""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


class Failure(Exception):
    """Ends a command with ``code`` after printing ``message`` (if any) on standard error."""

    def __init__(self, code: Exit, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
