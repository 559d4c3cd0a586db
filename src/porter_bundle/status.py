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


# Bounds on what a status carries. grpcio clients refuse trailing metadata over 16 KiB and, more
# and more often, over about 8 KiB (RESOURCE_EXHAUSTED instead of the status): the message
# travels twice (grpc-message, percent-encoded, and in grpc-status-details-bin, base64), so what
# a client sent is quoted only in part. The whole Status stays within MAX_STATUS_BYTES (about
# 5.3 KiB as base64), the message within MAX_MESSAGE_BYTES (at most 2.3 KiB percent-encoded).
MAX_MESSAGE_BYTES = 768
MAX_METADATA_ENTRIES = 8
MAX_METADATA_BYTES = 96
MAX_VIOLATIONS = 20
MAX_FIELD_BYTES = 320
MAX_DESCRIPTION_BYTES = 320
MAX_STATUS_BYTES = 4000


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and rich status for an exception raised while serving a call. Never fails
    on odd text (lone surrogates are escaped) and stays within grpcio's metadata limits
    (long text is cut, at most :data:`MAX_VIOLATIONS` violations then "and K more")."""
    code = status_code(exc)
    if code is not None and isinstance(exc, errors.PorterBundleError):
        details: list[Message] = [
            error_details_pb2.ErrorInfo(
                reason=bounded(exc.reason, MAX_METADATA_BYTES),
                domain=ERROR_DOMAIN,
                metadata={
                    bounded(k, MAX_METADATA_BYTES): bounded(str(v), MAX_METADATA_BYTES)
                    for k, v in list(exc.metadata.items())[:MAX_METADATA_ENTRIES]
                },
            )
        ]
        message = bounded(exc.message, MAX_MESSAGE_BYTES)
        if isinstance(exc, errors.InvalidArgument) and exc.violations:
            room = MAX_STATUS_BYTES - len(message.encode()) - details[0].ByteSize() - 64
            details.append(_bad_request(exc.violations, room))
        return code, _status(code, message, details)
    return _internal(exc)


def bounded(text: str, max_bytes: int) -> str:
    """``text`` as valid UTF-8 of at most ``max_bytes`` bytes: lone surrogates escaped
    (``\\ud800``), the end cut off at a character boundary and marked with "…"."""
    raw = text.encode("utf-8", "backslashreplace")
    if len(raw) <= max_bytes:
        return raw.decode("utf-8") if len(raw) != len(text) else text
    return raw[: max_bytes - 3].decode("utf-8", "ignore") + "…"


def _bad_request(
    violations: list[errors.FieldViolation], room: int
) -> error_details_pb2.BadRequest:
    """The first violations (at most :data:`MAX_VIOLATIONS`, within ``room`` bytes), each
    bounded, and a last entry counting the rest."""
    out = error_details_pb2.BadRequest()
    size = 0
    for v in violations[:MAX_VIOLATIONS]:
        field = bounded(v.field, MAX_FIELD_BYTES)
        description = bounded(v.description, MAX_DESCRIPTION_BYTES)
        size += len(field.encode()) + len(description.encode()) + 8
        if size > room:
            break
        out.field_violations.add(field=field, description=description)
    rest = len(violations) - len(out.field_violations)
    if rest:
        out.field_violations.add(field="", description=f"and {rest} more violations")
    return out


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


__all__ = ["ERROR_DOMAIN", "STATUS_CODES", "abort", "bounded", "status_code", "to_status"]
