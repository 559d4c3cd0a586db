"""The gRPC side of observing: one call wrapper (around each method's handler, when the
server is built) that counts and times every call into the server's
:class:`~porter_bundle.observability.metrics.Metrics` (as go-grpc-prometheus does) and tells
the access log of each finished call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import grpc
from prometheus_client import Counter

from porter_bundle.api.interception import Handler, HandlerWrapper
from porter_bundle.auth import authz
from porter_bundle.auth.roles import Principal
from porter_bundle.observability.metrics import Metrics


def _type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


class _Call:
    """The metrics of one method, resolved once."""

    def __init__(self, m: Metrics, grpc_type: str, service: str, method: str) -> None:
        labels = (grpc_type, service, method)
        self.labels = labels
        self.started = m.grpc_started.labels(*labels)
        self.received = m.grpc_received.labels(*labels)
        self.sent = m.grpc_sent.labels(*labels)
        self.in_flight = m.grpc_in_flight.labels(*labels)
        self.seconds = m.grpc_seconds.labels(*labels)
        self._handled = m.grpc_handled
        self._codes: dict[str, Counter] = {}

    def begin(self) -> float:
        self.started.inc()
        self.in_flight.inc()
        return time.perf_counter()

    def end(self, began: float, code: str) -> None:
        self.in_flight.dec()
        self.seconds.observe(time.perf_counter() - began)
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = self._handled.labels(*self.labels, code)
        counter.inc()


def code_of(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The status a call ended with, by name (OK, NOT_FOUND, ...)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return "OK"
    return "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"


class _Began(NamedTuple):
    time: float
    seen: list[Principal]
    """Who the call was authenticated as (see authz.witness)."""


class _CountingContext:
    """A servicer context that counts the messages a handler writes (health's Watch)."""

    def __init__(self, context: Any, sent: Callable[[], None]) -> None:
        self._context = context
        self._sent = sent

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._sent()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


Finished = Callable[[str, float, str, str | None], None]
"""Told of each finished call: (method, seconds, code, principal or None when none was
authenticated) — the access log."""


class CallObserver(HandlerWrapper):
    """Counts and times every call of the server's methods; put it first, so calls the
    authentication refuses are counted too."""

    def __init__(self, metrics: Metrics | None, finished: Finished | None = None) -> None:
        self._m = metrics
        self._finished = finished

    def wrap(self, handler: Handler, method: str) -> Handler:
        """``handler`` counted and timed (UNIMPLEMENTED methods never get here)."""
        service, _, name = method.lstrip("/").rpartition("/")
        grpc_type = _type(handler)
        call = _Call(self._m, grpc_type, service, name) if self._m is not None else None
        done = self._finished

        def begin() -> _Began:
            seen = authz.witness() if done is not None else []
            return _Began(call.begin() if call is not None else time.perf_counter(), seen)

        def end(began: _Began, context: Any, error: BaseException | None) -> None:
            code = code_of(context, error)
            if call is not None:
                call.end(began.time, code)
            if done is not None:
                principal = began.seen[-1].name if began.seen else None
                done(method, time.perf_counter() - began.time, code, principal)

        def sent() -> None:
            if call is not None:
                call.sent.inc()

        def received() -> None:
            if call is not None:
                call.received.inc()

        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                began, error = begin(), None
                received()
                try:
                    response = await unary(request, context)
                    sent()
                    return response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    end(began, context, error)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kw)
        if handler.unary_stream is not None:
            streaming: Any = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> Any:
                began, error = begin(), None
                received()
                try:
                    result = streaming(request, _CountingContext(context, sent))
                    if hasattr(result, "__aiter__"):
                        async for item in result:
                            yield item
                            sent()
                    else:
                        await result
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    end(began, context, error)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kw)
        if handler.stream_stream is not None:
            bidi: Any = handler.stream_stream

            async def counted(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
                async for item in requests:
                    received()
                    yield item

            async def stream_stream(requests: AsyncIterator[Any], context: Any) -> Any:
                began, error = begin(), None
                try:
                    async for item in bidi(counted(requests), context):
                        yield item
                        sent()
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    end(began, context, error)

            return grpc.stream_stream_rpc_method_handler(stream_stream, **kw)
        return handler  # client streaming: none served


__all__ = ["CallObserver", "Finished", "code_of"]
