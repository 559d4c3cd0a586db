"""Servicer methods end their calls through the one error mapping (:mod:`porter_bundle.status`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc

from porter_bundle.status import abort

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def mapped(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wraps a servicer method so every exception it raises ends the call through
    :func:`~porter_bundle.status.abort` (a call already aborted is let through)."""

    @wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, exc)

    return wrapper
