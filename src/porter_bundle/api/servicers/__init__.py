"""The servicers, one per resource, that the server factory composes into its gRPC services.

Each is only translation: request in, one service call, response out. Together
:func:`porter_bundle_servicers` implement every RPC of porter.bundle.v1.PorterBundle;
:class:`PorterLegacyServicer` implements porter.v1alpha1.Porter.
"""

from __future__ import annotations

from porter_bundle.api.servicers.base import (
    SERVICE,
    SERVICE_DESCRIPTOR,
    Backend,
    Behaviour,
    Calls,
    Servicer,
)
from porter_bundle.api.servicers.bundles import BundleServicer
from porter_bundle.api.servicers.claims import ClaimServicer
from porter_bundle.api.servicers.documents import DocumentServicer
from porter_bundle.api.servicers.installations import InstallationServicer
from porter_bundle.api.servicers.legacy import (
    LEGACY_SERVICE,
    LEGACY_SERVICE_DESCRIPTOR,
    PorterLegacyServicer,
)
from porter_bundle.api.servicers.runs import RunServicer
from porter_bundle.api.servicers.value_sets import ValueSetServicer


def porter_bundle_servicers(backend: Backend) -> list[Servicer]:
    """The servicers of porter.bundle.v1.PorterBundle, each for its resource."""
    return [
        InstallationServicer(backend),
        RunServicer(backend),
        ValueSetServicer(backend, backend.services.credential_sets),
        ValueSetServicer(backend, backend.services.parameter_sets),
        BundleServicer(backend),
        DocumentServicer(backend),
        ClaimServicer(backend),
    ]


__all__ = [
    "LEGACY_SERVICE",
    "LEGACY_SERVICE_DESCRIPTOR",
    "SERVICE",
    "SERVICE_DESCRIPTOR",
    "Backend",
    "Behaviour",
    "BundleServicer",
    "Calls",
    "ClaimServicer",
    "DocumentServicer",
    "InstallationServicer",
    "PorterLegacyServicer",
    "RunServicer",
    "Servicer",
    "ValueSetServicer",
    "porter_bundle_servicers",
]
