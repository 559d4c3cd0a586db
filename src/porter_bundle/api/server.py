"""The server factory: PorterBundle, composed from one servicer per resource, Porter's legacy
API, health and reflection on one grpc.aio server."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from porter_bundle.api.servicers import (
    LEGACY_SERVICE,
    LEGACY_SERVICE_DESCRIPTOR,
    SERVICE,
    SERVICE_DESCRIPTOR,
    Backend,
    Behaviour,
    Calls,
    PorterLegacyServicer,
    Servicer,
    porter_bundle_servicers,
)
from porter_bundle.api.wire import serialize
from porter_bundle.auth.audit import AuditLog
from porter_bundle.auth.exposure import is_loopback
from porter_bundle.auth.interceptor import Authenticator, AuthInterceptor
from porter_bundle.auth.tls import server_credentials
from porter_bundle.auth.tokens import TokenFile
from porter_bundle.config import Settings
from porter_bundle.service import Services
from porter_bundle.service.events import RunEvents
from porter_bundle.service.reveal import RevealService
from porter_bundle.service.streams import StreamTiming

log = logging.getLogger(__name__)
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION = reflection.SERVICE_NAME

MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# Keepalive fit for long-lived clients behind proxies: we ping idle connections every
# minute, and accept client pings down to every 10 s (gRPC's default refuses pings more
# often than every 5 minutes and closes the connection with ENHANCE_YOUR_CALM).
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


@dataclass
class RunningServer:
    """A started server, the port it bound and what shutting it down needs."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    events: RunEvents | None = None
    """The hub of live streams: closed first on stop, so they end UNAVAILABLE at once."""
    legacy: grpc.aio.Server | None = None
    """The legacy-only listener (``--legacy-address``), when there is one."""
    legacy_port: int = 0

    async def stop(self, grace: float | None) -> None:
        """Reports NOT_SERVING, ends live streams with UNAVAILABLE (clients resume on another
        server), lets other in-flight calls finish for ``grace`` seconds, then stops."""
        await self.health.enter_graceful_shutdown()
        if self.events is not None:
            self.events.close()
        if self.legacy is not None:
            await self.legacy.stop(grace)
        await self.server.stop(grace)


def _handlers(
    servicers: Iterable[Servicer], descriptor: ServiceDescriptor = SERVICE_DESCRIPTOR
) -> grpc.GenericRpcHandler:
    """Method handlers of one service, built from its descriptor over the RPCs the servicers
    implement (each RPC by exactly one; ValueError otherwise); list responses may be
    pre-encoded bytes."""
    from google.protobuf import symbol_database

    implemented: dict[str, Behaviour] = {}
    for servicer in servicers:
        for name, behaviour in servicer.rpcs().items():
            if name in implemented:
                raise ValueError(f"{descriptor.full_name}/{name} is implemented twice")
            implemented[name] = behaviour
    declared = {method.name for method in descriptor.methods}
    if declared != implemented.keys():
        missing = sorted(declared - implemented.keys())
        unknown = sorted(implemented.keys() - declared)
        raise ValueError(
            f"{descriptor.full_name}: servicers lack {missing} and implement unknown {unknown}"
        )
    db = symbol_database.Default()
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        request_cls = db.GetSymbol(method.input_type.full_name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        methods[method.name] = make(
            implemented[method.name],
            request_deserializer=request_cls.FromString,
            response_serializer=serialize,
        )
    return grpc.method_handlers_generic_handler(descriptor.full_name, methods)


def _interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    """The authentication interceptor when callers are authenticated; none otherwise."""
    if not settings.authenticates:
        return []
    tokens = TokenFile(settings.token_file) if settings.token_file else None
    authenticator = Authenticator(tokens, mtls=bool(settings.tls_client_ca))
    return [
        AuthInterceptor(authenticator, reflection_requires_auth=settings.reflection_requires_auth)
    ]


async def start_server(settings: Settings, services: Services, executor: Executor) -> RunningServer:
    """Builds and starts the server on ``settings.address`` (port 0 picks one). Handlers run
    their blocking calls on ``executor``, the pool the services use (its owner shuts it down)."""
    interceptors = _interceptors(settings)  # first: a bad token file fails before anything starts
    audit = AuditLog(settings.audit_log)
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    backend = Backend(
        services,
        Calls(executor, inline_reads=services.local_database),
        RevealService(services, audit, legacy_reveal_sensitive=settings.legacy_reveal_sensitive),
        StreamTiming(
            heartbeat_seconds=settings.stream_heartbeat_seconds,
            recheck_seconds=settings.stream_recheck_seconds,
        ),
    )
    server.add_generic_rpc_handlers([_handlers(porter_bundle_servicers(backend))])
    legacy_handlers = _handlers([PorterLegacyServicer(backend)], LEGACY_SERVICE_DESCRIPTOR)
    server.add_generic_rpc_handlers([legacy_handlers])

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, LEGACY_SERVICE, HEALTH, REFLECTION), server)
    legacy_server = None
    legacy_port = 0
    if settings.legacy_address:
        legacy_server, legacy_port = _legacy_listener(
            settings.legacy_address, legacy_handlers, health_servicer
        )
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        creds = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        port = server.add_secure_port(settings.address, creds)
    elif settings.tls_client_ca:
        raise ValueError("mutual TLS (--tls-client-ca) needs --tls-cert and --tls-key")
    else:
        port = server.add_insecure_port(settings.address)
    if port == 0:
        raise OSError(f"could not listen on {settings.address}")
    await server.start()
    if legacy_server is not None:
        await legacy_server.start()
    for name in ("", SERVICE, LEGACY_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on port %d", SERVICE, port)
    return RunningServer(server, port, health_servicer, services.events, legacy_server, legacy_port)


def _legacy_listener(
    address: str, handlers: grpc.GenericRpcHandler, health_servicer: health.aio.HealthServicer
) -> tuple[grpc.aio.Server, int]:
    """The Porter operator's own listener: porter.v1alpha1.Porter only (with health and
    reflection), plaintext, no interceptors, as the operator dials ``porter-grpc-service:3001``.
    Without an interceptor every call is the local caller, and sensitive outputs stay withheld
    unless --legacy-reveal-sensitive (RevealService.legacy_latest_outputs)."""
    legacy = grpc.aio.server(options=SERVER_OPTIONS)
    legacy.add_generic_rpc_handlers([handlers])
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, legacy)
    reflection.enable_server_reflection((LEGACY_SERVICE, HEALTH, REFLECTION), legacy)
    port = legacy.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not listen on {address}")
    if not is_loopback(address):
        log.warning(
            "serving %s on %s in plaintext WITHOUT AUTHENTICATION (--legacy-address): only "
            "the Porter operator may be able to reach it (a NetworkPolicy or equivalent)",
            LEGACY_SERVICE,
            address,
        )
    log.info("serving %s (legacy listener) on port %d", LEGACY_SERVICE, port)
    return legacy, port
