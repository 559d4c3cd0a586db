"""The server factory: PorterBundle, composed from one servicer per resource, Porter's legacy
API, health and reflection on one grpc.aio server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from porter_bundle.api.decoding import decoder, refuse_malformed, refuse_malformed_stream
from porter_bundle.api.interception import HandlerWrapper, wrapped
from porter_bundle.api.reflection import V1_DESCRIPTOR, V1ALPHA_DESCRIPTOR
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
from porter_bundle.auth.interceptor import Authenticator, AuthGuard
from porter_bundle.auth.tls import server_credentials
from porter_bundle.auth.tokens import TokenFile
from porter_bundle.config import Settings
from porter_bundle.observability import Observability
from porter_bundle.observability.health import HealthProbe
from porter_bundle.service import Services
from porter_bundle.service.events import RunEvents
from porter_bundle.service.reveal import RevealService
from porter_bundle.service.streams import StreamTiming

log = logging.getLogger(__name__)

HEALTH_DESCRIPTOR = cast(ServiceDescriptor, health_pb2.DESCRIPTOR.services_by_name["Health"])
REFLECTION_DESCRIPTORS = (V1ALPHA_DESCRIPTOR, V1_DESCRIPTOR)

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


class HealthServicer(health.aio.HealthServicer):
    """grpcio's health service, with ``List`` (the snapshot of every service's status) that
    its aio servicer lacks."""

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # typeshed's stubs predate List: its messages and the status map are not in them.
        statuses: dict[str, Any] = cast(Any, self)._server_status
        messages: Any = health_pb2
        return messages.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in statuses.items()
            }
        )


@dataclass
class RunningServer:
    """A started server, the port it bound and what shutting it down needs."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    events: RunEvents | None = None
    """The hub of live streams: closed first on stop, so they end UNAVAILABLE at once."""
    observability: Observability | None = None
    """Logs and metrics of this server: detached once it has stopped."""
    probe: HealthProbe | None = None
    """Sets the health statuses from the dependencies: stopped first on stop."""
    legacy: grpc.aio.Server | None = None
    """The legacy-only listener (``--legacy-address``), when there is one."""
    legacy_port: int = 0

    async def stop(self, grace: float | None) -> None:
        """Reports NOT_SERVING, ends live streams with UNAVAILABLE (clients resume on another
        server), lets other in-flight calls finish for ``grace`` seconds, then stops."""
        if self.probe is not None:
            await self.probe.stop()
        await self.health.enter_graceful_shutdown()
        if self.events is not None:
            self.events.close()
        if self.legacy is not None:
            await self.legacy.stop(grace)
        await self.server.stop(grace)
        if self.observability is not None:
            self.observability.close()


def _handlers(
    servicers: Iterable[Servicer],
    descriptor: ServiceDescriptor = SERVICE_DESCRIPTOR,
    wrappers: Sequence[HandlerWrapper] = (),
) -> grpc.GenericRpcHandler:
    """Method handlers of one service, built from its descriptor over the RPCs the servicers
    implement (each RPC by exactly one; ValueError otherwise), each wrapped by ``wrappers``;
    list responses may be pre-encoded bytes. A request that cannot be decoded ends
    INVALID_ARGUMENT (MALFORMED_REQUEST)."""
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
    return _decoding_handlers(descriptor, implemented, wrappers=wrappers)


def _decoding_handlers(
    descriptor: ServiceDescriptor,
    implemented: dict[str, Behaviour],
    decode_as: ServiceDescriptor | None = None,
    wrappers: Sequence[HandlerWrapper] = (),
) -> grpc.GenericRpcHandler:
    """Handlers of every method of ``descriptor`` (unary requests, or a bidirectional
    stream), each decoding its own requests: bytes that are no request end INVALID_ARGUMENT
    (see :mod:`api.decoding`), and wrapped by ``wrappers`` (the first outermost).
    ``decode_as``: a service whose request messages are the same on the wire, decoded as its
    own (reflection v1 as v1alpha, which its servicer speaks)."""
    from google.protobuf import symbol_database

    db = symbol_database.Default()
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        request_type = (decode_as or descriptor).methods_by_name[method.name].input_type
        request_cls = db.GetSymbol(request_type.full_name)
        behaviour = implemented[method.name]
        if method.client_streaming:
            if not method.server_streaming:
                raise ValueError(f"{method.full_name}: client streaming needs server streaming")
            handler = grpc.stream_stream_rpc_method_handler(
                refuse_malformed_stream(behaviour),
                request_deserializer=decoder(request_cls),
                response_serializer=serialize,
            )
        else:
            make = (
                grpc.unary_stream_rpc_method_handler
                if method.server_streaming
                else grpc.unary_unary_rpc_method_handler
            )
            handler = make(
                refuse_malformed(behaviour),
                request_deserializer=decoder(request_cls),
                response_serializer=serialize,
            )
        full_name = f"/{descriptor.full_name}/{method.name}"
        methods[method.name] = wrapped(handler, full_name, wrappers)
    return grpc.method_handlers_generic_handler(descriptor.full_name, methods)


def _reflection_handlers(
    service_names: tuple[str, ...], wrappers: Sequence[HandlerWrapper] = ()
) -> list[grpc.GenericRpcHandler]:
    """Server reflection (``grpc.reflection.v1`` and ``v1alpha``) listing ``service_names``,
    through the decoding handlers: a request that is no ServerReflectionRequest ends the
    stream INVALID_ARGUMENT (MALFORMED_REQUEST), not UNKNOWN."""
    names = (*service_names, *(d.full_name for d in REFLECTION_DESCRIPTORS))
    servicer = reflection.aio.ReflectionServicer(names)
    behaviours: dict[str, Behaviour] = {"ServerReflectionInfo": servicer.ServerReflectionInfo}
    return [
        _decoding_handlers(d, behaviours, V1ALPHA_DESCRIPTOR, wrappers)
        for d in REFLECTION_DESCRIPTORS
    ]


def _guards(
    settings: Settings, on_refused: Callable[[str], None] | None = None
) -> list[HandlerWrapper]:
    """The authentication when callers are authenticated; none otherwise."""
    if not settings.authenticates:
        return []
    tokens = TokenFile(settings.token_file) if settings.token_file else None
    authenticator = Authenticator(tokens, mtls=bool(settings.tls_client_ca))
    return [
        AuthGuard(
            authenticator,
            reflection_requires_auth=settings.reflection_requires_auth,
            on_refused=on_refused,
        )
    ]


async def start_server(
    settings: Settings, services: Services, executor: Executor, *, tracer_provider: Any = None
) -> RunningServer:
    """Builds and starts the server on ``settings.address`` (port 0 picks one). Handlers run
    their blocking calls on ``executor``, the pool the services use (its owner shuts it down).
    ``tracer_provider`` (an OpenTelemetry SDK one, for tests) turns traces on."""
    _guards(settings)  # first: a bad token file fails before anything starts
    observability = Observability(settings, services, tracer_provider=tracer_provider)
    try:
        return await _start(settings, services, executor, observability)
    except BaseException:
        observability.close()
        raise


async def _start(
    settings: Settings, services: Services, executor: Executor, observability: Observability
) -> RunningServer:
    # The call metrics first: they count the calls authentication refuses too. Both wrap the
    # handlers of this listener only (the legacy one is neither guarded nor counted).
    wrappers = [*observability.wrappers(), *_guards(settings, observability.on_refused)]
    audit = AuditLog(settings.audit_log, on_reveal=observability.on_reveal)
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=observability.interceptors())
    backend = Backend(
        services,
        Calls(executor, inline_reads=services.local_database),
        RevealService(services, audit, legacy_reveal_sensitive=settings.legacy_reveal_sensitive),
        StreamTiming(
            heartbeat_seconds=settings.stream_heartbeat_seconds,
            recheck_seconds=settings.stream_recheck_seconds,
        ),
    )
    server.add_generic_rpc_handlers(
        [_handlers(porter_bundle_servicers(backend), wrappers=wrappers)]
    )
    legacy_servicer = PorterLegacyServicer(backend)
    legacy_handlers = _handlers([legacy_servicer], LEGACY_SERVICE_DESCRIPTOR)
    server.add_generic_rpc_handlers(
        [_handlers([legacy_servicer], LEGACY_SERVICE_DESCRIPTOR, wrappers)]
    )

    health_servicer = HealthServicer()
    # Health through the same decoding handlers: an undecodable probe is INVALID_ARGUMENT too.
    health_methods = {m.name: getattr(health_servicer, m.name) for m in HEALTH_DESCRIPTOR.methods}
    health_handlers = _decoding_handlers(HEALTH_DESCRIPTOR, health_methods)
    server.add_generic_rpc_handlers(
        [_decoding_handlers(HEALTH_DESCRIPTOR, health_methods, wrappers=wrappers)]
    )
    server.add_generic_rpc_handlers(
        _reflection_handlers((SERVICE, LEGACY_SERVICE, HEALTH_DESCRIPTOR.full_name), wrappers)
    )
    legacy_server = None
    legacy_port = 0
    if settings.legacy_address:
        legacy_server, legacy_port = _legacy_listener(
            settings.legacy_address,
            legacy_handlers,
            health_handlers,
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
    probe = HealthProbe(
        health_servicer,
        database=lambda: services.blocking.run(services.runs.check_database),
        engine=services.actions.check_engine,
        database_services=("", LEGACY_SERVICE),
        engine_services=(SERVICE,),
        interval=settings.health_probe_seconds,
        metrics=observability.metrics,
    )
    await probe.check()  # the first answer is already the truth
    observability.start()
    await server.start()
    probe.start()
    if legacy_server is not None:
        await legacy_server.start()
    log.info("serving %s on port %d", SERVICE, port)
    if observability.metrics_port is not None:
        log.info("serving Prometheus metrics on port %d", observability.metrics_port)
    return RunningServer(
        server,
        port,
        health_servicer,
        services.events,
        observability=observability,
        probe=probe,
        legacy=legacy_server,
        legacy_port=legacy_port,
    )


def _legacy_listener(
    address: str, handlers: grpc.GenericRpcHandler, health_handlers: grpc.GenericRpcHandler
) -> tuple[grpc.aio.Server, int]:
    """The Porter operator's own listener: porter.v1alpha1.Porter only (with health and
    reflection), plaintext, neither guarded nor counted, as the operator dials ``porter-grpc-service:3001``.
    Unguarded, every call is the local caller, and sensitive outputs stay withheld
    unless --legacy-reveal-sensitive (RevealService.legacy_latest_outputs)."""
    legacy = grpc.aio.server(options=SERVER_OPTIONS)
    reflecting = _reflection_handlers((LEGACY_SERVICE, HEALTH_DESCRIPTOR.full_name))
    legacy.add_generic_rpc_handlers([handlers, health_handlers, *reflecting])
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
