"""The service layer: every business rule, over the store. Knows nothing of gRPC."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.config import Settings
from porter_bundle.documents import SchemaCheck
from porter_bundle.executor import Executor
from porter_bundle.service.actions import (
    ActionPreview,
    ActionRequest,
    ActionService,
    ActionSettings,
    LeaseSettings,
)
from porter_bundle.service.blocking import Blocking, shared
from porter_bundle.service.bundle_updates import BundleUpdater
from porter_bundle.service.bundles import BundleService
from porter_bundle.service.claims import ClaimService
from porter_bundle.service.documents import DocumentService
from porter_bundle.service.events import RunEvents
from porter_bundle.service.installation_status import InstallationStatusService
from porter_bundle.service.installations import InstallationService
from porter_bundle.service.legacy import LegacyService
from porter_bundle.service.observe import Observers
from porter_bundle.service.runs import RunService
from porter_bundle.service.sources import DirectorySecretStore, SecretStore, SourceResolver
from porter_bundle.service.streams import StreamService
from porter_bundle.service.value_sets import CREDENTIAL_SETS, PARAMETER_SETS, ValueSetService
from porter_bundle.store import Database


def _no_executor() -> Executor:
    from porter_bundle.executor import ExecutorUnavailable

    raise ExecutorUnavailable("no container engine is configured")


@dataclass(frozen=True)
class Services:
    """Every service, built over one store."""

    installations: InstallationService
    runs: RunService
    credential_sets: ValueSetService[CredentialSet]
    parameter_sets: ValueSetService[ParameterSet]
    bundles: BundleService
    actions: ActionService
    legacy: LegacyService
    """Porter's legacy API (porter.v1alpha1.Porter), over the same store."""
    claims: ClaimService
    """CNAB claims and claim results (see service.claims), over the same store."""
    bundle_updates: BundleUpdater
    """UpdateBundle (see service.bundle_updates), over the same store."""
    blocking: Blocking
    """The one pool every blocking call runs on (see service.blocking)."""
    local_database: bool = False
    """True when the database is a local SQLite file (reads are then cheap and never block)."""
    schema_check: SchemaCheck = SchemaCheck.EXACT
    """How strictly Porter documents' schemaVersion must match (the server's schema-check)."""
    store: Database | None = None
    """The store itself, for what operating it needs (its pool usage in the metrics)."""

    @property
    def documents(self) -> DocumentService:
        """Porter documents: Apply* and Export* (see service.documents)."""
        return DocumentService(
            installations=self.installations,
            credential_sets=self.credential_sets,
            parameter_sets=self.parameter_sets,
            actions=self.actions,
            bundles=self.bundles,
            blocking=self.blocking,
            schema_check=self.schema_check,
        )

    @property
    def status(self) -> InstallationStatusService:
        """Installations' CNAB status (see service.installation_status)."""
        return InstallationStatusService(
            installations=self.installations,
            bundles=self.bundles,
            runs=self.runs,
            claims=self.claims,
            actions=self.actions,
            blocking=self.blocking,
        )

    @property
    def events(self) -> RunEvents:
        """The hub live streams wait on; RunService publishes to it (see service.events)."""
        return self.runs.events

    @property
    def streams(self) -> StreamService:
        """Live run states and logs (server streams), over ``runs`` and its hub."""
        return StreamService(self.runs)

    @classmethod
    def create(
        cls,
        store: Database,
        *,
        executor: Callable[[], Executor] = _no_executor,
        action_settings: ActionSettings | None = None,
        secrets: SecretStore | None = None,
        schema_check: SchemaCheck = SchemaCheck.EXACT,
        registry: RegistryClient | None = None,
        blocking: Blocking | None = None,
        output_retention_runs: int = 0,
        leases: LeaseSettings | None = None,
    ) -> Services:
        """Builds the services over ``store``; ``executor`` is called once, when first needed.

        With a ``registry`` client, bundle references unknown here are resolved in their OCI
        registry, when an installation is created or updated and for every action; without
        one (most tests) nothing touches the network. Without ``action_settings``, runs take
        the defaults of the server's settings. Blocking calls run on ``blocking``'s
        pool; without one (tests, one-shot commands) on a pool shared by the process.
        ``output_retention_runs`` > 0 keeps output values of that many most recent runs per
        installation only (see RunRecorder). ``leases``: this replica's id and its runs' lease
        timing (None: a new id and the default timing)."""
        blocking = blocking or shared()
        observers = Observers()
        bundles = BundleService(store, registry=registry, observers=observers)
        installations = InstallationService(
            store,
            resolve_bundle=bundles.resolve if registry is not None else None,
            find_bundle=bundles.cached,
        )
        runs = RunService(store, output_retention_runs=output_retention_runs)
        credential_sets = ValueSetService(store, CREDENTIAL_SETS)
        parameter_sets = ValueSetService(store, PARAMETER_SETS)
        resolver = SourceResolver(secrets or DirectorySecretStore(Path("/nonexistent")))
        actions = ActionService(
            installations=installations,
            runs=runs,
            bundles=bundles,
            credential_sets=credential_sets,
            parameter_sets=parameter_sets,
            resolver=resolver,
            executor=executor,
            settings=action_settings or ActionSettings.from_settings(Settings()),
            blocking=blocking,
            observers=observers,
            leases=leases,
        )
        return cls(
            installations,
            runs,
            credential_sets,
            parameter_sets,
            bundles,
            actions,
            LegacyService(store),
            ClaimService(store),
            BundleUpdater(store),
            blocking,
            store.is_sqlite,
            schema_check=schema_check,
            store=store,
        )


__all__ = [
    "ActionPreview",
    "ActionRequest",
    "ActionService",
    "ActionSettings",
    "Blocking",
    "LeaseSettings",
    "Services",
]
