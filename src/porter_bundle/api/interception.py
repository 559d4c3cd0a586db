"""The base of the server's interceptors: each wraps a method's handler once.

The server's handlers never change, so an interceptor that wraps them (authentication, the
call metrics) builds the wrapped handler on a method's first call and returns it from then
on; methods the server does not have (UNIMPLEMENTED) are never wrapped nor remembered (their
names are the client's choice)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Calls :meth:`wrap` once per method and serves the handler it returns."""

    def __init__(self) -> None:
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method: str = handler_call_details.method
        found = self._wrapped.get(method)
        if found is not None:
            return found
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrapped[method] = self.wrap(handler, method)
        return wrapped

    def wrap(self, handler: Handler, method: str) -> Handler:
        """The handler to serve ``method`` with (``handler`` itself to leave it alone)."""
        raise NotImplementedError


__all__ = ["Handler", "WrappingInterceptor"]
