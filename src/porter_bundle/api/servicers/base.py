"""What every servicer shares: how service calls run, the caller, and request/response helpers.

Service calls are blocking (database I/O), so each runs on the server's worker pool while the
event loop keeps serving other calls; reads on a local SQLite file run inline (see
:meth:`Calls.read`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import grpc

from porter.bundle.v1 import porter_bundle_pb2
from porter_bundle.api.wire import list_response
from porter_bundle.auth import authz
from porter_bundle.errors import Violations
from porter_bundle.service import Services
from porter_bundle.service.paging import PageResult
from porter_bundle.service.reveal import Caller, RevealService
from porter_bundle.service.streams import StreamTiming

T = TypeVar("T")
Ctx = grpc.aio.ServicerContext[Any, Any]
Behaviour = Callable[[Any, Ctx], Any]
"""A servicer method as gRPC calls it: (request, context)."""

SERVICE_DESCRIPTOR = porter_bundle_pb2.DESCRIPTOR.services_by_name["PorterBundle"]
SERVICE: str = SERVICE_DESCRIPTOR.full_name


class Calls:
    """Runs blocking service calls for the servicers."""

    def __init__(self, executor: Executor, *, inline_reads: bool = False) -> None:
        self._executor = executor
        self._inline_reads = inline_reads

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking service call on the worker pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read-only service call. On a local SQLite file a read takes a fraction of a
        millisecond and never waits for writers (WAL), so it runs on the event loop: the
        hop to a worker thread, and the GIL contention it brings, cost more than the read."""
        if self._inline_reads:
            return fn(*args, **kwargs)
        return await self.run(fn, *args, **kwargs)


@dataclass(frozen=True)
class Backend:
    """What the servicers translate to: the services, how to call them, and reveals."""

    services: Services
    calls: Calls
    reveals: RevealService
    stream_timing: StreamTiming


class Servicer:
    """Base of the servicers: each implements some RPCs of one gRPC service (:attr:`service`)."""

    service: ClassVar[str] = SERVICE

    def __init__(self, backend: Backend) -> None:
        self._s = backend.services
        self._reveals = backend.reveals
        self._run = backend.calls.run
        self._read = backend.calls.read

    def rpcs(self) -> dict[str, Behaviour]:
        """The RPCs this servicer implements, by method name (its methods named like RPCs)."""
        return {
            name: getattr(self, name)
            for name in dir(type(self))
            if name[:1].isupper() and callable(getattr(self, name))
        }

    def caller(self, method: str) -> Caller:
        """The caller of the current call of ``method`` (read on the event loop: worker
        threads do not see the call's access)."""
        return Caller(authz.current(), f"/{self.service}/{method}")


def page_bytes(page: PageResult) -> bytes:
    """A list response, pre-encoded, from a page of stored messages."""
    return list_response(page.docs, page.next_page_token, page.total_size)


def require(request: Any, field_name: str) -> None:
    """INVALID_ARGUMENT unless the message field ``field_name`` of ``request`` is set."""
    if not request.HasField(field_name):
        v = Violations()
        v.add(field_name, f"{field_name} is required")
        v.raise_if_any()


def list_args(request: Any) -> dict[str, Any]:
    """The arguments of a namespaced list service call, from its request (and the caller's
    visible namespaces, for a list over every namespace)."""
    return {
        "namespace": request.namespace,
        "all_namespaces": request.all_namespaces,
        "name": request.name,
        "labels": dict(request.labels),
        "page_size": request.page_size,
        "page_token": request.page_token,
        "skip": request.skip,
        "visible": authz.current().visible,
    }
