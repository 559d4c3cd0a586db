"""Decoding requests without letting grpcio fail them: bytes that are not a message of the RPC's
request type end the call INVALID_ARGUMENT (reason MALFORMED_REQUEST), never UNKNOWN; and a
``google.protobuf.Value`` number that is not finite (NaN, Infinity), which no JSON client can
read back and no bundle parameter can hold, ends it INVALID_ARGUMENT (NON_FINITE_NUMBER) for
every RPC alike, before any service sees it.

grpcio turns an exception raised by a request deserializer into UNKNOWN with the exception's
class in the message. So the deserializer never raises: it returns the decoded message, or a
:class:`~porter_bundle.errors.MalformedRequest` in its place, and the handler (wrapped with
:func:`refuse_malformed`) ends the call with that error through the one error mapping. The
authentication guard sees the same stand-in and refuses it after authenticating.
A method whose requests stream (server reflection's ``ServerReflectionInfo``) is wrapped with
:func:`refuse_malformed_stream`: the first request that is no message ends the stream the same
way.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from functools import cache, wraps
from typing import Any, cast

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message

from porter_bundle.errors import FieldViolation, InvalidArgument, MalformedRequest
from porter_bundle.status import abort

MAX_REASON_CHARS = 200
"""How much of the decoder's own explanation the error quotes."""


_VALUE = struct_pb2.Value.DESCRIPTOR.full_name
_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name


def decoder(request_cls: type[Message]) -> Callable[[bytes], Message | InvalidArgument]:
    """A request deserializer for ``request_cls`` that returns the error (a MalformedRequest,
    or an InvalidArgument for non-finite numbers) instead of raising or decoding."""
    full_name = request_cls.DESCRIPTOR.full_name

    check_numbers = holds_values(request_cls.DESCRIPTOR)

    def decode(data: bytes) -> Message | InvalidArgument:
        try:
            message = request_cls.FromString(data)
        except (DecodeError, RecursionError, ValueError) as exc:
            _, _, why = str(exc).rpartition(": ")
            why = why[:MAX_REASON_CHARS] or "wire format was corrupt"
            return MalformedRequest(
                f"the request is not a valid {full_name}: {why}",
                metadata={"type": full_name},
            )
        if check_numbers:
            found = non_finite_numbers(message)
            if found:
                return InvalidArgument.from_violations(
                    (FieldViolation(path, NOT_FINITE) for path in found),
                    reason="NON_FINITE_NUMBER",
                )
        return message

    return decode


NOT_FINITE = "numbers must be finite (JSON has no NaN or Infinity)"
MAX_FOUND = 50
"""Non-finite numbers reported per request (the status lists fewer)."""


@cache
def holds_values(descriptor: Descriptor) -> bool:
    """Whether messages of this type can hold a ``google.protobuf.Value``, however deeply."""
    seen: set[str] = set()
    stack = [descriptor]
    while stack:
        d = stack.pop()
        if d.full_name == _VALUE:
            return True
        if d.full_name in seen:
            continue
        seen.add(d.full_name)
        stack.extend(f.message_type for f in d.fields if f.message_type is not None)
    return False


def non_finite_numbers(message: Message) -> list[str]:
    """The field paths of the non-finite ``number_value`` Values in ``message`` (at most
    :data:`MAX_FOUND`); iterative, the decoder bounds the depth."""
    found: list[str] = []
    stack: list[tuple[Message, str]] = [(message, "")]
    while stack and len(found) < MAX_FOUND:
        node, path = stack.pop()
        if node.DESCRIPTOR.full_name == _VALUE:
            value = cast(struct_pb2.Value, node)
            kind = value.WhichOneof("kind")
            if kind == "number_value" and not math.isfinite(value.number_value):
                found.append(path)
            elif kind == "struct_value":
                stack.extend((v, f"{path}.{k}") for k, v in value.struct_value.fields.items())
            elif kind == "list_value":
                stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value.list_value.values))
            continue
        if node.DESCRIPTOR.full_name == _STRUCT:  # JSON paths: installation.custom.x
            fields = cast(struct_pb2.Struct, node).fields
            stack.extend((v, f"{path}.{k}") for k, v in fields.items())
            continue
        for field, item in node.ListFields():
            kind_of = field.message_type
            if kind_of is None or not holds_values(kind_of):
                continue
            name = f"{path}.{field.name}" if path else field.name
            if kind_of.GetOptions().map_entry:
                if holds_values(kind_of.fields_by_name["value"].message_type or kind_of):
                    stack.extend((v, f"{name}.{k}") for k, v in item.items())
            elif field.is_repeated:
                stack.extend((v, f"{name}[{i}]") for i, v in enumerate(item))
            else:
                stack.append((item, name))
    return found


def refuse_malformed(behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wraps a handler so a request the decoder refused ends INVALID_ARGUMENT."""

    @wraps(behaviour)
    async def handler(request: Any, context: Any) -> Any:
        if isinstance(request, InvalidArgument):
            await abort(context, request)
        return await behaviour(request, context)

    return handler


def refuse_malformed_stream(
    behaviour: Callable[[Any, Any], AsyncIterable[Any]],
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    """Wraps the handler of a bidirectional stream so the first request the decoder refused
    ends the call INVALID_ARGUMENT (the responses to the requests before it are sent)."""

    @wraps(behaviour)
    async def handler(requests: AsyncIterable[Any], context: Any) -> AsyncIterator[Any]:
        async def checked() -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, InvalidArgument):
                    await abort(context, request)
                yield request

        async for response in behaviour(checked(), context):
            yield response

    return handler
