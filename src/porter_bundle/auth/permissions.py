"""What each RPC needs: a role, and where the namespace it is checked in comes from.

The table covers every RPC of porter.bundle.v1.PorterBundle and porter.v1alpha1.Porter
(:func:`missing` lists any it does not; a test keeps that list empty). An RPC without an
entry is refused (fail closed). Checks run before the call looks anything up, so a caller
without rights gets PERMISSION_DENIED whether or not the resource exists.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from porter.bundle.v1 import porter_bundle_pb2
from porter.v1alpha1 import porter_pb2 as legacy_porter_pb2
from porter_bundle.auth.roles import EDITOR, OPERATOR, VIEWER

SERVICES: tuple[ServiceDescriptor, ...] = (
    porter_bundle_pb2.DESCRIPTOR.services_by_name["PorterBundle"],
    legacy_porter_pb2.DESCRIPTOR.services_by_name["Porter"],
)


class Scope(enum.Enum):
    """Where the namespace of a check comes from."""

    NAMESPACE = "namespace"
    """A request field (``Rule.field``, a dotted path) names the namespace."""
    LIST = "list"
    """A list call: a named namespace needs the role there; every namespace
    (``all_namespaces``, or Porter's ``*``) lists only the namespaces the caller may see."""
    CATALOGUE_READ = "catalogue-read"
    """The global bundle catalogue: the role in any namespace."""
    CATALOGUE_WRITE = "catalogue-write"
    """Changing the bundle catalogue: the role in every namespace (a ``*`` binding)."""
    RUN = "run"
    """A run addressed by installation (checked like NAMESPACE) or by its ID alone (checked
    once the run is found; a run the caller may not see is NOT_FOUND)."""
    DOCUMENT = "document"
    """A Porter document in ``document``: its ``namespace``."""


@dataclass(frozen=True)
class Rule:
    """The role an RPC needs and where its namespace comes from."""

    role: str
    scope: Scope
    field: str = "namespace"
    all_field: str = "all_namespaces"

    def namespace(self, request: Any) -> str:
        """The namespace the request addresses (NAMESPACE, LIST and RUN scopes)."""
        value: Any = request
        for part in self.field.split("."):
            value = getattr(value, part)
        return str(value)


def _ns(role: str, field: str = "namespace") -> Rule:
    return Rule(role, Scope.NAMESPACE, field)


_LIST = Rule(VIEWER, Scope.LIST)
_PB = "/porter.bundle.v1.PorterBundle/"
_LEGACY = "/porter.v1alpha1.Porter/"

RULES: Mapping[str, Rule] = {
    _PB + "ListInstallations": _LIST,
    _PB + "GetInstallation": _ns(VIEWER),
    _PB + "CreateInstallation": _ns(EDITOR, "installation.namespace"),
    _PB + "UpdateInstallation": _ns(EDITOR, "installation.namespace"),
    _PB + "DeleteInstallation": _ns(EDITOR),
    _PB + "ListInstallationRuns": _ns(VIEWER),
    _PB + "GetInstallationRun": _ns(VIEWER),
    _PB + "ListInstallationRunOutputs": _ns(VIEWER),
    _PB + "ExecuteAction": _ns(OPERATOR),
    _PB + "CancelRun": _ns(OPERATOR),
    _PB + "GetInstallationRunLogs": _ns(VIEWER),
    _PB + "ListCredentialSets": _LIST,
    _PB + "GetCredentialSet": _ns(VIEWER),
    _PB + "CreateCredentialSet": _ns(EDITOR, "credential_set.namespace"),
    _PB + "UpdateCredentialSet": _ns(EDITOR, "credential_set.namespace"),
    _PB + "DeleteCredentialSet": _ns(EDITOR),
    _PB + "ListParameterSets": _LIST,
    _PB + "GetParameterSet": _ns(VIEWER),
    _PB + "CreateParameterSet": _ns(EDITOR, "parameter_set.namespace"),
    _PB + "UpdateParameterSet": _ns(EDITOR, "parameter_set.namespace"),
    _PB + "DeleteParameterSet": _ns(EDITOR),
    _PB + "ListBundles": Rule(VIEWER, Scope.CATALOGUE_READ),
    _PB + "GetBundle": Rule(VIEWER, Scope.CATALOGUE_READ),
    _PB + "CreateBundle": Rule(EDITOR, Scope.CATALOGUE_WRITE),
    _PB + "UpdateBundle": Rule(EDITOR, Scope.CATALOGUE_WRITE),
    _PB + "DeleteBundle": Rule(EDITOR, Scope.CATALOGUE_WRITE),
    # Pulling only caches what a reference names, as creating an installation with that
    # reference does, so an editor of any namespace may pull.
    _PB + "PullBundle": Rule(EDITOR, Scope.CATALOGUE_READ),
    _PB + "WatchInstallationRuns": Rule(VIEWER, Scope.RUN),
    _PB + "StreamRunLogs": Rule(VIEWER, Scope.RUN),
    # Starting the run a document's reconcile decides needs operator too (checked then).
    _PB + "ApplyInstallation": Rule(EDITOR, Scope.DOCUMENT),
    _PB + "ApplyCredentialSet": Rule(EDITOR, Scope.DOCUMENT),
    _PB + "ApplyParameterSet": Rule(EDITOR, Scope.DOCUMENT),
    _PB + "ExportInstallation": _ns(VIEWER),
    _PB + "ExportCredentialSet": _ns(VIEWER),
    _PB + "ExportParameterSet": _ns(VIEWER),
    _PB + "ListClaims": _LIST,
    # A claim is a run: addressed by installation, or by its ID alone (checked once found).
    _PB + "GetClaim": Rule(VIEWER, Scope.RUN),
    _PB + "ListClaimResults": Rule(VIEWER, Scope.RUN),
    _PB + "GetClaimResult": Rule(VIEWER, Scope.RUN),
    # `refresh` runs the status action: operator too (checked then).
    _PB + "GetInstallationStatus": _ns(VIEWER),
    _LEGACY + "ListInstallations": Rule(VIEWER, Scope.LIST, all_field="allNamespaces"),
    _LEGACY + "ListInstallationLatestOutputs": _ns(VIEWER),
}


def method_names(services: Iterable[ServiceDescriptor] = SERVICES) -> list[str]:
    """Full method names (``/package.Service/Method``) of the services."""
    return [f"/{s.full_name}/{m.name}" for s in services for m in s.methods]


def missing(services: Iterable[ServiceDescriptor] = SERVICES) -> list[str]:
    """RPCs of the services that have no rule."""
    return [m for m in method_names(services) if m not in RULES]
