"""The base of the server's call wrappers (authentication, the call metrics): each wraps a
method's handler once, when the server is built.

The server's handlers never change, so wrapping them up front costs nothing per call, where a
``grpc.aio`` interceptor is awaited on every call before the handler is even found. Methods
the server does not have end UNIMPLEMENTED before any wrapper (their names are the client's
choice, and are neither counted nor remembered)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


class HandlerWrapper:
    """Gives the handler to serve a method with, from the method's own."""

    def wrap(self, handler: Handler, method: str) -> Handler:
        """The handler to serve ``method`` (``/package.Service/Method``) with; ``handler``
        itself to leave it alone."""
        raise NotImplementedError


def wrapped(handler: Handler, method: str, wrappers: Sequence[HandlerWrapper]) -> Handler:
    """``handler`` wrapped by each of ``wrappers``, the first outermost (it sees a call first)."""
    for wrapper in reversed(wrappers):
        handler = wrapper.wrap(handler, method)
    return handler


__all__ = ["Handler", "HandlerWrapper", "wrapped"]
