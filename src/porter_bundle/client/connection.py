"""The one place client commands make channels: address, TLS and the bearer token.

Flags (added by :func:`add_connection_flags`, with ``--server``): ``--token-file`` (a file
holding the token; else env ``PORTER_BUNDLE_TOKEN``), ``--tls`` (verify the server with the
system roots), ``--tls-ca`` (verify it with this CA; implies ``--tls``), ``--tls-cert`` and
``--tls-key`` (a client certificate for mutual TLS; implies ``--tls``).
"""

from __future__ import annotations

import argparse
import collections
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

ENV_TOKEN = "PORTER_BUNDLE_TOKEN"
ENV_TLS_CA = "PORTER_BUNDLE_TLS_CA"


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the token and TLS flags of a client command."""
    # No env default of its own: $PORTER_BUNDLE_TOKEN_FILE names the server's token file (of
    # hashes), which a client must never send as its token.
    parser.add_argument(
        "--token-file",
        default="",
        help=f"file holding the bearer token to send (else env {ENV_TOKEN})",
    )
    parser.add_argument("--tls", action="store_true", help="connect over TLS (system CA roots)")
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get(ENV_TLS_CA, ""),
        help=f"PEM CA that signed the server's certificate; implies --tls (env {ENV_TLS_CA})",
    )
    parser.add_argument("--tls-cert", default="", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")


def bearer_token(args: argparse.Namespace) -> str:
    """The token to send: ``args.token`` (the agent's configured token), the ``--token-file``
    content, else $PORTER_BUNDLE_TOKEN, else ""."""
    if getattr(args, "token", ""):
        return str(args.token).strip()
    path = getattr(args, "token_file", "")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(ENV_TOKEN, "").strip()


def _credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    ca, cert, key = (getattr(args, f, "") for f in ("tls_ca", "tls_cert", "tls_key"))
    if not (getattr(args, "tls", False) or ca or cert or key):
        return None
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


def channel(args: argparse.Namespace, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to ``args.server`` with the command's TLS and token."""
    creds = _credentials(args)
    ch = (
        grpc.secure_channel(args.server, creds, options=options)
        if creds is not None
        else grpc.insecure_channel(args.server, options=options)
    )
    token = bearer_token(args)
    return grpc.intercept_channel(ch, _TokenInterceptor(token)) if token else ch


def aio_channel(
    args: argparse.Namespace, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """An asyncio channel to ``args.server`` with the command's TLS and token."""
    creds = _credentials(args)
    token = bearer_token(args)
    interceptors: list[grpc.aio.ClientInterceptor] | None = (
        [_AioUnaryToken(token), _AioStreamToken(token)] if token else None
    )
    if creds is not None:
        return grpc.aio.secure_channel(
            args.server, creds, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(args.server, options=options, interceptors=interceptors)
