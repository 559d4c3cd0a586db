"""The server's guard: authenticates every call, then checks its access rule (a
:class:`~porter_bundle.api.interception.HandlerWrapper`, wrapped around each method's handler
when the server is built).

A call carries ``authorization: Bearer <token>`` metadata, or (mutual TLS) a verified client
certificate whose subject CN is the principal. Failures end the call through the one error
mapping (:mod:`porter_bundle.status`): UNAUTHENTICATED with reason TOKEN_MISSING or
TOKEN_UNKNOWN, PERMISSION_DENIED with reason ROLE_REQUIRED. Health checks are always open;
reflection is open unless ``reflection_requires_auth``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, NoReturn

import grpc

from porter_bundle.api.interception import Handler, HandlerWrapper
from porter_bundle.auth import authz
from porter_bundle.auth.permissions import RULES, Rule
from porter_bundle.auth.roles import LOCAL, Principal
from porter_bundle.auth.tls import peer_common_name
from porter_bundle.auth.tokens import TokenFile
from porter_bundle.errors import PorterBundleError, Unauthenticated
from porter_bundle.status import abort

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
AUTHORIZATION = "authorization"
BEARER = "bearer "

Ctx = grpc.aio.ServicerContext[Any, Any]


class Authenticator:
    """Turns a call's credentials into a :class:`Principal`.

    A bearer token is looked up in the token file. Without one, a mutual-TLS client is the
    principal its certificate CN names: the token file entry of that name when there is a
    token file (no entry: no roles), else every role (the client CA vouches for it).
    """

    def __init__(self, tokens: TokenFile | None, *, mtls: bool = False) -> None:
        self.tokens = tokens
        self.mtls = mtls

    def authenticate(self, metadata: Iterable[Any] | None, common_name: str | None) -> Principal:
        """The caller's principal; UNAUTHENTICATED when there is none."""
        token = bearer_token(metadata)
        if token:
            found = self.tokens.authenticate(token) if self.tokens is not None else None
            if found is None:
                raise Unauthenticated("the bearer token is not known", reason="TOKEN_UNKNOWN")
            return found
        if self.mtls and common_name:
            if self.tokens is None:
                return Principal(common_name, LOCAL.bindings)  # every role everywhere
            return self.tokens.principal(common_name) or Principal(common_name)
        raise Unauthenticated(
            "no credentials: send the metadata 'authorization: Bearer <token>'",
            reason="TOKEN_MISSING",
        )


def bearer_token(metadata: Iterable[Any] | None) -> str:
    """The token of the call's ``authorization: Bearer <token>`` metadata, or ""."""
    for key, value in metadata or ():
        if (
            key.lower() == AUTHORIZATION
            and isinstance(value, str)
            and value[: len(BEARER)].lower() == BEARER
        ):
            return value[len(BEARER) :].strip()
    return ""


class AuthGuard(HandlerWrapper):
    """Authenticates and authorizes each call before the servicer sees it."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        reflection_requires_auth: bool = False,
        rules: Mapping[str, Rule] = RULES,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._auth = authenticator
        self._on_refused = on_refused
        """Told the reason of each refused call (the metrics)."""
        self._reflection_requires_auth = reflection_requires_auth
        self._rules = rules

    def wrap(self, handler: Handler, method: str) -> Handler:
        """The guarded handler of ``method`` (health checks are never guarded)."""
        if method.startswith(HEALTH_PREFIX):
            return handler
        if method.startswith(REFLECTION_PREFIXES):
            if not self._reflection_requires_auth:
                return handler
            return self._guard_reflection(handler)
        return self._guard(handler, method)

    async def _refuse(self, context: Ctx, exc: PorterBundleError) -> NoReturn:
        if self._on_refused is not None:
            self._on_refused(exc.reason)
        await abort(context, exc)

    def _principal(self, context: Ctx) -> Principal:
        common_name = peer_common_name(context) if self._auth.mtls else None
        return self._auth.authenticate(context.invocation_metadata(), common_name)

    def _guard(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        rule = self._rules.get(method)
        behaviour: Any = handler.unary_unary or handler.unary_stream
        if behaviour is None or handler.request_streaming:  # not one of ours: refuse
            behaviour = None

        async def guarded(request: Any, context: Ctx) -> Any:
            try:
                principal = self._principal(context)
                if isinstance(request, PorterBundleError):  # undecodable (api.decoding)
                    raise request
                access = authz.authorize(rule, request, principal, method)
            except PorterBundleError as exc:
                await self._refuse(context, exc)
            if behaviour is None:  # pragma: no cover - every RPC we serve is unary-request
                await abort(context, authz.denied(principal, "", None, method))
            token = authz.activate(access)
            try:
                return await behaviour(request, context)
            finally:
                authz.deactivate(token)

        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.response_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return make(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _guard_reflection(
        self, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        inner: Any = handler.stream_stream
        assert inner is not None

        async def guarded(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
            try:
                self._principal(context)
            except PorterBundleError as exc:
                await self._refuse(context, exc)
            async for response in inner(requests, context):
                yield response

        return grpc.stream_stream_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
