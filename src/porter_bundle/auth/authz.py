"""Authorization: the caller of the current call, and the checks the API layer makes.

The guard (:mod:`porter_bundle.auth.interceptor`) authenticates a call, checks its
:class:`~porter_bundle.auth.permissions.Rule` and puts an :class:`Access` in a context
variable for the call's task. Servicers read it with :func:`current` and hand it to the
service layer: what a list may show (:attr:`Access.visible`), whether a run found by ID may be
seen (:mod:`porter_bundle.service.visibility`), whether values may be revealed
(:mod:`porter_bundle.service.reveal`). Without authentication there is no Access and the caller is
:data:`~porter_bundle.auth.roles.LOCAL`, who may do everything.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from porter_bundle.auth.permissions import Rule, Scope
from porter_bundle.auth.roles import LOCAL, SECRET_READER, Principal
from porter_bundle.errors import PermissionDenied, PorterBundleError

LEGACY_ALL_NAMESPACES = "*"


@dataclass(frozen=True)
class Access:
    """Who is calling, and (for a list over every namespace) what they may see."""

    principal: Principal
    method: str = ""
    authenticated: bool = False
    """True when the server authenticates callers (False: the local, all-powerful caller)."""
    visible: frozenset[str] | None = None
    """Namespaces a list over every namespace may show; None = all."""

    def may(self, role: str, namespace: str) -> bool:
        """Whether the caller holds ``role`` in ``namespace``."""
        return self.principal.has(role, namespace)

    def require(self, role: str, namespace: str) -> None:
        """PERMISSION_DENIED unless the caller holds ``role`` in ``namespace``."""
        if not self.may(role, namespace):
            raise denied(self.principal, role, namespace, self.method)

    def require_reveal(self, namespace: str) -> None:
        """PERMISSION_DENIED unless the caller may reveal sensitive values in ``namespace``."""
        self.require(SECRET_READER, namespace)


_CURRENT: contextvars.ContextVar[Access] = contextvars.ContextVar("porter_bundle_access")
_LOCAL_ACCESS = Access(LOCAL)


def current() -> Access:
    """The Access of the call being served (the local caller when authentication is off)."""
    return _CURRENT.get(_LOCAL_ACCESS)


_WITNESS: contextvars.ContextVar[list[Principal] | None] = contextvars.ContextVar(
    "porter_bundle_access_witness", default=None
)


def witness() -> list[Principal]:
    """A list that the principal of the call being served is appended to once it is
    authenticated: for the access log, whose call wrapper runs before authentication."""
    seen: list[Principal] = []
    _WITNESS.set(seen)
    return seen


def activate(access: Access) -> contextvars.Token[Access]:
    """Makes ``access`` current for the calling task; undo with :func:`deactivate`."""
    seen = _WITNESS.get()
    if seen is not None:
        seen.append(access.principal)
    return _CURRENT.set(access)


def deactivate(token: contextvars.Token[Access]) -> None:
    """Undoes :func:`activate`."""
    _CURRENT.reset(token)


def denied(principal: Principal, role: str, namespace: str | None, method: str) -> PermissionDenied:
    """The error of a missing role (``namespace`` None: a role needed in every namespace)."""
    where = "every namespace" if namespace is None else f"namespace {namespace or '(global)'!r}"
    meta = {"principal": principal.name, "role": role, "method": method}
    if namespace is not None:
        meta["namespace"] = namespace
    return PermissionDenied(
        f"{principal.name} may not call {method.rsplit('/', 1)[-1] or 'this'}: "
        f"needs role {role} in {where}",
        reason="ROLE_REQUIRED",
        metadata=meta,
    )


def authorize(rule: Rule | None, request: Any, principal: Principal, method: str) -> Access:
    """Checks ``rule`` for ``request``: the call's Access, or PERMISSION_DENIED."""
    if rule is None:  # fail closed: an RPC nobody gave a rule
        raise PermissionDenied(
            f"{method} has no access rule", reason="NO_ACCESS_RULE", metadata={"method": method}
        )
    access = Access(principal, method, authenticated=True)
    role, scope = rule.role, rule.scope
    if scope is Scope.NAMESPACE:
        access.require(role, rule.namespace(request))
    elif scope is Scope.LIST:
        namespace = rule.namespace(request)
        if getattr(request, rule.all_field) or namespace == LEGACY_ALL_NAMESPACES:
            return Access(principal, method, True, principal.namespaces(role))
        access.require(role, namespace)
    elif scope is Scope.CATALOGUE_READ:
        if not principal.has_anywhere(role):
            raise denied(principal, role, "", method)
    elif scope is Scope.CATALOGUE_WRITE:
        if not principal.has_everywhere(role):
            raise denied(principal, role, None, method)
    elif scope is Scope.RUN:
        if request.name or request.namespace:
            access.require(role, request.namespace)
        elif not principal.has_anywhere(role):  # by run ID: checked once the run is found
            raise denied(principal, role, "", method)
    elif scope is Scope.DOCUMENT:
        in_document = document_namespace(request.document)
        if in_document is None:  # unreadable: the call reports why, if the role is held anywhere
            if not principal.has_anywhere(role):
                raise denied(principal, role, "", method)
        else:
            access.require(role, in_document)
    return access


def document_namespace(raw: bytes) -> str | None:
    """The ``namespace`` of a Porter document ("" when absent); None when it cannot be read."""
    from porter_bundle.documents.parse import parse_one

    try:
        doc = parse_one(raw)
    except PorterBundleError:
        return None
    if not isinstance(doc, dict):
        return None
    namespace = doc.get("namespace", "")
    return namespace if isinstance(namespace, str) else None
