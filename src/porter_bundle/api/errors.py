"""The one place where errors become gRPC statuses.

Domain errors map to a status code plus a ``google.rpc.ErrorInfo`` (domain
:data:`ERROR_DOMAIN`, the error's stable reason and metadata) and, for
INVALID_ARGUMENT, a ``google.rpc.BadRequest`` listing field violations. Anything
else is a fault of ours: it is logged with its traceback under an incident ID and
the client sees INTERNAL with only that ID.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy.exc import OperationalError

from porter_bundle import errors

log = logging.getLogger(__name__)

ERROR_DOMAIN = "porter-bundle"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Every domain error class and its code. A test checks that each subclass of
# PorterBundleError is listed here.
STATUS_CODES: dict[type[errors.PorterBundleError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and rich status for an exception raised while serving a call."""
    if isinstance(exc, errors.PorterBundleError):
        code = STATUS_CODES[type(exc)]
        details: list[Any] = [
            error_details_pb2.ErrorInfo(
                reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata
            )
        ]
        if isinstance(exc, errors.InvalidArgument) and exc.violations:
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in exc.violations
                    ]
                )
            )
        return code, _status(code, exc.message, details)
    if isinstance(exc, OperationalError):
        incident = secrets.token_hex(6)
        log.error("database unavailable (incident %s)", incident, exc_info=exc)
        code = grpc.StatusCode.UNAVAILABLE
        info = error_details_pb2.ErrorInfo(
            reason="DATABASE_UNAVAILABLE", domain=ERROR_DOMAIN, metadata={"incident": incident}
        )
        return code, _status(
            code, f"the database is unavailable; retry later (incident {incident})", [info]
        )
    incident = secrets.token_hex(6)
    log.error("internal error (incident %s)", incident, exc_info=exc)
    code = grpc.StatusCode.INTERNAL
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"incident": incident}
    )
    return code, _status(code, f"internal error (incident {incident})", [info])


def _status(code: grpc.StatusCode, message: str, details: list[Any]) -> status_pb2.Status:
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    return status_pb2.Status(code=_CODE_NUMBERS[code], message=message, details=packed)


_CODE_NUMBERS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: code_pb2.ABORTED,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
}


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """Ends the call with the status :func:`to_status` gives for ``exc``."""
    code, status = to_status(exc)
    await context.abort(
        code, status.message, trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),)
    )
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def mapped(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wraps a servicer method so every exception it raises ends the call through :func:`abort`."""

    @wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await abort(context, exc)

    return wrapper


def _is_abort(exc: BaseException) -> bool:
    # grpc.aio signals context.abort() with this internal exception; let it through.
    return type(exc).__name__ == "AbortError"
