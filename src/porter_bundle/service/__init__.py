"""The service layer: every business rule, over the store. Knows nothing of gRPC."""

from __future__ import annotations

from dataclasses import dataclass

from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.installations import InstallationService
from porter_bundle.service.runs import RunService
from porter_bundle.service.value_sets import CREDENTIAL_SETS, PARAMETER_SETS, ValueSetService
from porter_bundle.store import Store


@dataclass(frozen=True)
class Services:
    """Every service, built over one store."""

    installations: InstallationService
    runs: RunService
    credential_sets: ValueSetService[CredentialSet]
    parameter_sets: ValueSetService[ParameterSet]
    bundles: BundleService

    @classmethod
    def create(cls, store: Store) -> Services:
        """Builds the services over ``store``."""
        return cls(
            installations=InstallationService(store),
            runs=RunService(store),
            credential_sets=ValueSetService(store, CREDENTIAL_SETS),
            parameter_sets=ValueSetService(store, PARAMETER_SETS),
            bundles=BundleService(store),
        )
