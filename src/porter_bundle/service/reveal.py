"""Reveals of sensitive values: who may see them, merging them in, and the audit record.

Reads return sensitive values withheld: an installation's sensitive parameters, a run's
sensitive parameters, sensitive output values, literal credential values. A caller may ask
for them (``reveal_sensitive``); :class:`RevealService` then checks, before anything is
looked up, that the caller holds secret-reader in the namespace (PERMISSION_DENIED
otherwise), reads the values, puts them in place of the withheld ones and, when a value
was shown, writes one audit record (never a value) naming the caller, the method and the
resource.

The caller's :class:`~porter_bundle.auth.authz.Access` is passed in as a :class:`Caller`:
these calls run on worker threads, where the access of the call being served (a context
variable of its task) is not visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf import json_format

from installation.v1alpha1 import installation_pb2 as legacy
from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.run_pb2 import Output, Run
from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet
from porter_bundle.auth.audit import AuditLog, resource_name
from porter_bundle.auth.authz import Access
from porter_bundle.auth.roles import SECRET_READER
from porter_bundle.documents import Format
from porter_bundle.service.documents import InstallationExport
from porter_bundle.service.runs import ResolvedOutputs
from porter_bundle.service.value_sets import CREDENTIAL_SETS, SetKind, SetMessage, ValueSetService

if TYPE_CHECKING:
    from porter_bundle.service import Services


@dataclass(frozen=True)
class Caller:
    """Who asks, and through which method (``/package.Service/Method``, for the audit log)."""

    access: Access
    method: str


class RevealService:
    """Reads that may reveal sensitive values, each reveal authorized and audited."""

    def __init__(
        self, services: Services, audit: AuditLog, *, legacy_reveal_sensitive: bool = False
    ) -> None:
        self._s = services
        self._audit = audit
        self._legacy_reveal_sensitive = legacy_reveal_sensitive
        """Porter's legacy API hands sensitive outputs to every caller (a trusted deployment)."""

    # --- installations -------------------------------------------------------------

    def installation(
        self, namespace: str, name: str, *, reveal: bool, caller: Caller
    ) -> Installation:
        """One installation; with ``reveal``, its sensitive parameter values in ``parameters``."""
        self._authorize(reveal, namespace, caller)
        inst = self._s.installations.get(namespace, name, reveal=reveal)
        if reveal:
            self._record(caller, resource_name("installations", namespace, name), namespace)
        return inst

    def export_installation(
        self, namespace: str, name: str, fmt: Format, *, reveal: bool, caller: Caller
    ) -> InstallationExport:
        """An installation as Porter's document; with ``reveal``, its sensitive values too."""
        self._authorize(reveal, namespace, caller)
        exported = self._s.documents.export_installation(namespace, name, fmt, reveal=reveal)
        if reveal:
            self._record(caller, resource_name("installations", namespace, name), namespace)
        return exported

    # --- runs and outputs ----------------------------------------------------------

    def run(self, namespace: str, name: str, run_id: str, *, reveal: bool, caller: Caller) -> Run:
        """One run (``run_id`` may be "latest"); with ``reveal``, its sensitive parameter values
        in ``parameters`` (audited when it has any)."""
        self._authorize(reveal, namespace, caller)
        run = self._s.runs.get(namespace, name, run_id)
        if reveal and run.sensitive_parameters:
            values = self._s.runs.run_parameters(run.id)
            run.parameters.update({k: values[k] for k in run.sensitive_parameters if k in values})
            resource = resource_name(
                "installations", run.namespace, run.installation, "runs", run.id
            )
            self._record(caller, resource, namespace)
        return run

    def run_outputs(
        self,
        namespace: str,
        name: str,
        run_id: str,
        *,
        any_result: bool,
        reveal: bool,
        caller: Caller,
    ) -> ResolvedOutputs:
        """Outputs of a run (or of "latest"), serialized; with ``reveal``, sensitive output
        values in ``value`` (audited when there are any)."""
        self._authorize(reveal, namespace, caller)
        found = self._s.runs.outputs(namespace, name, run_id, any_result=any_result)
        if not reveal:
            return found
        outputs = [Output.FromString(d) for d in found.docs]
        if not any(o.sensitive for o in outputs):
            return found
        values = self._s.runs.revealed_outputs(found.run_id)
        for out in outputs:
            if out.sensitive and out.name in values:
                json_format.ParseDict(values[out.name], out.value)
        resource = resource_name("installations", namespace, name, "runs", found.run_id, "outputs")
        self._record(caller, resource, namespace)
        return ResolvedOutputs(
            found.run_id, found.run_state, [o.SerializeToString() for o in outputs]
        )

    def legacy_latest_outputs(
        self, namespace: str, name: str, *, caller: Caller
    ) -> list[legacy.PorterValue]:
        """Porter's latest outputs of an installation: sensitive values in clear when the server
        hands them to every caller (``--legacy-reveal-sensitive``) or, when callers are
        authenticated, to one holding secret-reader in the namespace (audited when shown)."""
        access = caller.access
        reveal = self._legacy_reveal_sensitive or (
            access.authenticated and access.may(SECRET_READER, namespace)
        )
        found = self._s.legacy.latest_outputs(namespace, name, reveal_sensitive=reveal)
        if reveal and any(v.sensitive for v in found):
            self._record(
                caller, resource_name("installations", namespace, name, "outputs"), namespace
            )
        return found

    # --- credential and parameter sets -----------------------------------------------

    def value_set(
        self,
        sets: ValueSetService[SetMessage],
        namespace: str,
        name: str,
        *,
        reveal: bool,
        caller: Caller,
    ) -> SetMessage:
        """One set; with ``reveal``, literal credential values in place of ``redacted``."""
        self._authorize(reveal, namespace, caller)
        if not reveal:
            return sets.get(namespace, name)
        found = sets.get_revealed(namespace, name)
        self._record(caller, self._set_resource(sets.kind, namespace, name), namespace)
        return found

    def export_credential_set(
        self, namespace: str, name: str, fmt: Format, *, reveal: bool, caller: Caller
    ) -> str:
        """A credential set as Porter's document; with ``reveal``, its literal values too."""
        self._authorize(reveal, namespace, caller)
        text = self._s.documents.export_credential_set(namespace, name, fmt, reveal=reveal)
        if reveal:
            resource = self._set_resource(CREDENTIAL_SETS, namespace, name)
            self._record(caller, resource, namespace)
        return text

    # --- internals -------------------------------------------------------------------

    @staticmethod
    def _authorize(reveal: bool, namespace: str, caller: Caller) -> None:
        """PERMISSION_DENIED when a reveal is asked and the caller may not (checked before
        anything is looked up)."""
        if reveal:
            caller.access.require_reveal(namespace)

    @staticmethod
    def _set_resource(
        kind: SetKind[CredentialSet] | SetKind[ParameterSet], namespace: str, name: str
    ) -> str:
        """The audited name of a set: ``credentialsets/ns/name`` or ``parametersets/ns/name``."""
        return resource_name(kind.title.replace(" ", "") + "s", namespace, name)

    def _record(self, caller: Caller, resource: str, namespace: str) -> None:
        self._audit.reveal(
            principal=caller.access.principal.name,
            method=caller.method,
            resource=resource,
            namespace=namespace,
        )


__all__ = ["Caller", "RevealService"]
