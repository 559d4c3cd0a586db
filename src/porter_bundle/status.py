"""The one place where errors become gRPC statuses (for the servicers and the interceptor).

Domain errors map to a status code plus a ``google.rpc.ErrorInfo`` (domain
:data:`ERROR_DOMAIN`, the error's stable reason and metadata) and, for
INVALID_ARGUMENT, a ``google.rpc.BadRequest`` listing field violations. The code is
looked up along the error's class hierarchy, so a subclass of a mapped error gets its
parent's code. Anything else is a fault of ours: it is logged with its traceback under
an incident ID and the client sees INTERNAL with only that ID.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from porter_bundle import errors

log = logging.getLogger(__name__)

ERROR_DOMAIN = "porter-bundle"

# The code of each kind of domain error; a subclass gets the code of its nearest listed
# ancestor. A test checks that each direct subclass of PorterBundleError is listed here.
STATUS_CODES: dict[type[errors.PorterBundleError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def status_code(exc: BaseException) -> grpc.StatusCode | None:
    """The code of a domain error: that of the nearest class in its hierarchy listed in
    :data:`STATUS_CODES`; None when there is none (not a domain error we map)."""
    for cls in type(exc).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return None


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and rich status for an exception raised while serving a call."""
    code = status_code(exc)
    if code is not None and isinstance(exc, errors.PorterBundleError):
        details: list[Message] = [
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
    return _internal(exc)


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """Ends the call with the status :func:`to_status` gives for ``exc`` (raises
    ``grpc.aio.AbortError``, as ``context.abort`` does)."""
    _, status = to_status(exc)
    await context.abort_with_status(rpc_status.to_status(status))


def _internal(exc: BaseException) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """A fault of ours: logged in full under an incident ID, the client sees only the ID."""
    incident = secrets.token_hex(6)
    log.error("internal error (incident %s)", incident, exc_info=exc)
    code = grpc.StatusCode.INTERNAL
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"incident": incident}
    )
    return code, _status(code, f"internal error (incident {incident})", [info])


def _status(code: grpc.StatusCode, message: str, details: list[Message]) -> status_pb2.Status:
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    number: int = code.value[0]
    return status_pb2.Status(code=number, message=message, details=packed)


__all__ = ["ERROR_DOMAIN", "STATUS_CODES", "abort", "status_code", "to_status"]
