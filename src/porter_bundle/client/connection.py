"""The one place the client makes channels: address, TLS and the bearer token.

A :class:`Target` says where the server is and how to reach it: ``token_file`` (a file holding
the bearer token; else ``token``, e.g. from $PORTER_BUNDLE_TOKEN), ``tls`` (verify the server
with the system roots), ``tls_ca`` (verify it with this CA; implies TLS), ``tls_cert`` and
``tls_key`` (a client certificate for mutual TLS; implies TLS).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_SERVER = "127.0.0.1:3001"


@dataclass(frozen=True)
class Target:
    """A server and how to connect to it. The token itself is never in the repr."""

    server: str = DEFAULT_SERVER
    token_file: str = ""
    token: str = ""
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def __repr__(self) -> str:
        return f"Target(server={self.server!r}, tls={self.uses_tls})"

    @property
    def uses_tls(self) -> bool:
        """Whether the channel is TLS (asked for, or implied by a CA or client certificate)."""
        return bool(self.tls or self.tls_ca or self.tls_cert or self.tls_key)


def bearer_token(target: Target) -> str:
    """The token to send: the ``token_file`` content, else ``token``, else ""."""
    if target.token_file:
        return Path(target.token_file).read_text().strip()
    return target.token.strip()


def _credentials(target: Target) -> grpc.ChannelCredentials | None:
    if not target.uses_tls:
        return None
    ca, cert, key = target.tls_ca, target.tls_cert, target.tls_key
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes() if ca else None,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


def _with_token(metadata: Sequence[tuple[str, Any]] | None, token: str) -> list[tuple[str, Any]]:
    return [*(metadata or ()), ("authorization", f"Bearer {token}")]


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, d: Any) -> _Details:
        return _Details(
            d.method,
            d.timeout,
            _with_token(d.metadata, self._token),
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)


class _AioToken:
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, d: Any) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*_with_token(d.metadata, self._token))
        return grpc.aio.ClientCallDetails(
            d.method, d.timeout, metadata, d.credentials, d.wait_for_ready
        )


# grpc.aio files an interceptor under its first matching kind only: one class per kind.
class _AioUnaryToken(_AioToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioStreamToken(_AioToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


def channel(target: Target, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to ``target.server`` with its TLS and token."""
    creds = _credentials(target)
    ch = (
        grpc.secure_channel(target.server, creds, options=options)
        if creds is not None
        else grpc.insecure_channel(target.server, options=options)
    )
    token = bearer_token(target)
    return grpc.intercept_channel(ch, _TokenInterceptor(token)) if token else ch


def aio_channel(target: Target, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An asyncio channel to ``target.server`` with its TLS and token."""
    creds = _credentials(target)
    token = bearer_token(target)
    interceptors: list[grpc.aio.ClientInterceptor] | None = (
        [_AioUnaryToken(token), _AioStreamToken(token)] if token else None
    )
    if creds is not None:
        return grpc.aio.secure_channel(
            target.server, creds, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(target.server, options=options, interceptors=interceptors)
