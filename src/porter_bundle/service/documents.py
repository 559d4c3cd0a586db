"""Porter documents in and out: Apply* (create or update from a document) and Export*.

A document is parsed and checked in full (:mod:`porter_bundle.documents`) before anything
is read or written, so a document that fails validation changes nothing. Violations from
the resource rules (names, labels, bundle references) and from a run's checks (parameters,
credentials) are reported with the document's field paths too.

ApplyInstallation reconciles (:mod:`porter_bundle.service.reconcile`) in Porter's order
(pkg/porter/reconcile.go): it checks the document and resolves its bundle (nothing is
stored when either fails), stores the document's state, decides, previewing the action
through the ActionService, and starts the run through ``ActionService.execute``. When
those checks refuse the action (bad or missing inputs, missing sets, another run active,
no container engine), the call fails with their error and the stored document change is
kept, as Porter keeps it: the desired state is recorded, and applying again retries.
A parameter given as ``{redacted: true}`` (an export's withheld sensitive value) takes the
value the server has for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from google.protobuf import json_format

from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    Action,
    Run,
    RunState,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet
from porter_bundle import documents as docs
from porter_bundle.documents import DocumentKind, SchemaCheck
from porter_bundle.documents.validate import join
from porter_bundle.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from porter_bundle.service.actions import ActionPreview, ActionRequest, ActionService
from porter_bundle.service.blocking import Blocking
from porter_bundle.service.bundles import BundleService, ResolvedBundle
from porter_bundle.service.common import created_concurrently
from porter_bundle.service.installations import (
    UPDATABLE_FIELDS,
    InstallationService,
    bundle_ref_of,
)
from porter_bundle.service.reconcile import Decision, LastRun, decide
from porter_bundle.service.value_sets import ValueSetService

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
MAX_REQUEST_ID = 120
"""ApplyInstallation's request_id; the attempts' suffixes keep a run's within 128 characters."""
MAX_ATTEMPTS = 99
_RETRIED_STATES = frozenset({RUN_STATE_FAILED, RUN_STATE_CANCELED})
_DOCUMENT_NAMES = {
    "schema_version": "schemaVersion",
    "parameter_sets": "parameterSets",
    "credential_sets": "credentialSets",
}


@dataclass(frozen=True)
class SetApplied:
    """What applying a credential or parameter set document did (or would do)."""

    resource: Any
    outcome: str
    changed_fields: list[str]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class InstallationApplied:
    """What applying an Installation document did (or, in a dry run, would do)."""

    installation: Installation
    outcome: str
    changed_fields: list[str]
    decision: Decision
    run: Run | None = None
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class InstallationExport:
    """An installation as Porter's Installation document, and which sensitive parameters it has."""

    document: str
    sensitive_parameters: list[str]
    """Names of its sensitive parameters; the document has their values only when revealed."""


@dataclass(frozen=True)
class _Prepared:
    validated: docs.Validated
    current: Installation | None
    """As stored (sensitive values withheld)."""
    would_store: Installation
    """The document's state, every parameter value in clear (never a response as it is)."""
    outcome: str
    changed: list[str]
    bundle: ResolvedBundle


class DocumentService:
    """Applies and exports Porter's Installation, CredentialSet and ParameterSet documents."""

    def __init__(
        self,
        *,
        installations: InstallationService,
        credential_sets: ValueSetService[CredentialSet],
        parameter_sets: ValueSetService[ParameterSet],
        actions: ActionService,
        bundles: BundleService,
        blocking: Blocking,
        schema_check: SchemaCheck = SchemaCheck.EXACT,
    ) -> None:
        self._installations = installations
        self._credential_sets = credential_sets
        self._parameter_sets = parameter_sets
        self._actions = actions
        self._bundles = bundles
        self._blocking = blocking
        self.schema_check = schema_check

    # --- credential and parameter sets ---------------------------------------------------

    def apply_credential_set(self, raw: bytes, *, dry_run: bool = False) -> SetApplied:
        """Creates or updates the credential set a CredentialSet document describes."""
        return self._apply_set(DocumentKind.CREDENTIAL_SET, self._credential_sets, raw, dry_run)

    def apply_parameter_set(self, raw: bytes, *, dry_run: bool = False) -> SetApplied:
        """Creates or updates the parameter set a ParameterSet document describes."""
        return self._apply_set(DocumentKind.PARAMETER_SET, self._parameter_sets, raw, dry_run)

    def _apply_set(
        self, kind: DocumentKind, sets: ValueSetService[Any], raw: bytes, dry_run: bool
    ) -> SetApplied:
        validated = docs.validate(docs.read_one(raw), kind, self.schema_check)
        given = docs.to_resource(validated)
        resource_prefix = (
            "credential_set." if kind is DocumentKind.CREDENTIAL_SET else "parameter_set."
        )
        with document_paths(validated.prefix, resource_prefix):
            resource, outcome, changed = sets.apply(given, dry_run=dry_run)
        return SetApplied(
            resource, outcome, [_document_name(f) for f in changed], validated.warnings
        )

    def export_credential_set(
        self, namespace: str, name: str, fmt: docs.Format, *, reveal: bool = False
    ) -> str:
        """A credential set as Porter's CredentialSet document: literal values ``redacted``,
        or with ``reveal`` (an authorized, audited caller) the values themselves."""
        if reveal:
            found = self._credential_sets.get_revealed(namespace, name)
        else:
            found = self._credential_sets.get(namespace, name)
        return docs.render(docs.from_credential_set(found), fmt)

    def export_parameter_set(self, namespace: str, name: str, fmt: docs.Format) -> str:
        """A parameter set as Porter's ParameterSet document."""
        found = self._parameter_sets.get(namespace, name)
        return docs.render(docs.from_parameter_set(found), fmt)

    # --- installations ---------------------------------------------------------------------

    def export_installation(
        self, namespace: str, name: str, fmt: docs.Format, *, reveal: bool = False
    ) -> InstallationExport:
        """An installation's desired state as Porter's Installation document: its sensitive
        parameters as ``{redacted: true}`` (applying that keeps the stored value), or with
        ``reveal`` (an authorized, audited caller) their values."""
        inst = self._installations.get(namespace, name, reveal=reveal)
        return InstallationExport(
            docs.render(docs.from_installation(inst), fmt), list(inst.sensitive_parameters)
        )

    async def apply_installation(
        self,
        raw: bytes,
        *,
        dry_run: bool = False,
        force: bool = False,
        authorize_run: Callable[[str], None] | None = None,
        request_id: str = "",
    ) -> InstallationApplied:
        """Applies an Installation document and reconciles the installation with it.

        In Porter's order (pkg/porter/reconcile.go): check the document and resolve its
        bundle (nothing is stored when either fails), store it, decide, run the action.
        A decision or run refused by ExecuteAction's checks fails the call with their
        error; the stored document change is kept, and applying again retries.
        ``authorize_run(namespace)`` is called before a run starts (it raises to refuse).
        With ``request_id``, a run that key started and that is active or succeeded is
        returned instead of deciding again (:func:`attempts`).
        """
        if len(request_id) > MAX_REQUEST_ID:
            raise InvalidArgument.from_violations(
                [FieldViolation("request_id", f"is longer than {MAX_REQUEST_ID} characters")]
            )
        prepared = await self._blocking.run(self._prepare, raw)
        stored = prepared.would_store
        if not dry_run:
            stored = await self._blocking.run(self._store_installation, prepared)
        run_request_id = ""
        if request_id and not dry_run:
            earlier, run_request_id = await self._blocking.run(
                self._attempt, stored.namespace, stored.name, request_id
            )
            if earlier is not None:
                return InstallationApplied(
                    stored,
                    prepared.outcome,
                    prepared.changed,
                    _attached(earlier),
                    earlier,
                    prepared.validated.warnings,
                )
        decision = await self._blocking.run(self._decide, prepared, stored, force)
        if dry_run:  # the document's state, as a write would store it
            before = () if prepared.current is None else prepared.current.sensitive_parameters
            stored = self._installations.withheld(stored, prepared.bundle, before)
        run = None
        if decision.action and not dry_run:
            if authorize_run is not None:
                authorize_run(stored.namespace)
            run = await self._actions.execute(
                ActionRequest(
                    stored.namespace,
                    stored.name,
                    decision.action,
                    force=decision.force_action,
                    request_id=run_request_id,
                )
            )
            stored = await self._blocking.run(
                self._installations.get, stored.namespace, stored.name
            )
        return InstallationApplied(
            stored, prepared.outcome, prepared.changed, decision, run, prepared.validated.warnings
        )

    def _prepare(self, raw: bytes) -> _Prepared:
        validated = docs.validate(docs.read_one(raw), DocumentKind.INSTALLATION, self.schema_check)
        desired = cast(Installation, docs.to_resource(validated))
        with document_paths(validated.prefix, "installation."):
            current = self._find(desired.namespace, desired.name)
            # Compared with every stored value, the withheld sensitive ones included.
            full = None if current is None else self._installations.revealed(current)
        _keep_withheld(desired, full, validated.prefix)
        with document_paths(validated.prefix, "installation."):
            would_store = self._installations.merged(full, desired)
        if full is None:
            outcome, changed = CREATED, [_document_name(f) for f in UPDATABLE_FIELDS]
        else:
            changed = [
                _document_name(f)
                for f in UPDATABLE_FIELDS
                if _installation_field(full, f) != _installation_field(would_store, f)
            ]
            outcome = UPDATED if changed else UNCHANGED
        # Porter resolves the bundle reference before it stores anything.
        bundle = self._bundles.resolve(bundle_ref_of(would_store))
        return _Prepared(validated, current, would_store, outcome, changed, bundle)

    def _decide(self, prepared: _Prepared, stored: Installation, force: bool) -> Decision:
        last = None if prepared.current is None else self._last_success(prepared.current.id)

        def preview(action: str, forced: bool) -> ActionPreview:
            return self._actions.preview(stored, action, force=forced)

        with document_paths(prepared.validated.prefix, "installation."):
            return decide(stored, last, force=force, preview=preview)

    def _store_installation(self, prepared: _Prepared) -> Installation:
        desired, current = prepared.would_store, prepared.current
        with document_paths(prepared.validated.prefix, "installation."):
            if current is None:
                try:
                    return self._installations.create(desired)
                except AlreadyExists:
                    raise created_concurrently(
                        "installation", desired.namespace, desired.name
                    ) from None
            if prepared.outcome == UNCHANGED:
                return current
            conditional = Installation()
            conditional.CopyFrom(desired)
            conditional.etag = current.etag  # changed since the decision: ABORTED, apply again
            return self._installations.update(conditional, [])

    def _attempt(self, namespace: str, name: str, request_id: str) -> tuple[Run | None, str]:
        """The run to attach to (the latest attempt of ``request_id``, when it is active or
        succeeded), else None and the request_id of the next attempt."""
        latest: Run | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            key = request_id if attempt == 1 else f"{request_id}~{attempt}"
            found = self._actions.run_by_request(namespace, name, key)
            if found is None:
                if latest is not None and latest.state not in _RETRIED_STATES:
                    return latest, ""
                return None, key
            latest = found
        raise FailedPrecondition(
            f"request {request_id!r} has been attempted {MAX_ATTEMPTS} times; use another request_id",
            reason="REQUEST_ATTEMPTS_EXHAUSTED",
            metadata={"request_id": request_id},
        )

    def _find(self, namespace: str, name: str) -> Installation | None:
        try:
            return self._installations.get(namespace, name)
        except NotFound:
            return None

    def _last_success(self, installation_id: str) -> LastRun | None:
        found = self._installations.last_successful_change(installation_id)
        return None if found is None else LastRun(*found)


def _keep_withheld(desired: Installation, full: Installation | None, prefix: str) -> None:
    """Puts the stored value in place of each ``{redacted: true}`` parameter (an export's
    withheld sensitive value); INVALID_ARGUMENT where there is no stored sensitive value."""
    kept = frozenset(full.sensitive_parameters) if full is not None else frozenset()
    problems = []
    for name, value in desired.parameters.fields.items():
        if not docs.is_withheld(docs.plain(value)):
            continue
        if full is not None and name in kept and name in full.parameters.fields:
            value.CopyFrom(full.parameters.fields[name])
        else:
            problems.append(
                FieldViolation(
                    join(join(prefix, "parameters"), name),
                    "{redacted: true} keeps the stored value of a sensitive parameter, "
                    "and the installation has none for it; give the value",
                )
            )
    if problems:
        raise InvalidArgument.from_violations(problems, reason="INVALID_DOCUMENT")


def _attached(run: Run) -> Decision:
    action = run.custom_action or Action.Name(run.action).removeprefix("ACTION_").lower()
    state = RunState.Name(run.state).removeprefix("RUN_STATE_")
    return Decision(
        action, f"run {run.id} of this request_id is {state}: attached to it, nothing new started"
    )


def _installation_field(inst: Installation, name: str) -> Any:
    value = getattr(inst, name)
    if name == "labels":
        return dict(value)
    if name == "bundle":
        return (value.repository, value.digest, value.version, value.tag)
    if name == "parameters":
        return json_format.MessageToDict(value)
    if name == "custom":
        return (inst.HasField("custom"), json_format.MessageToDict(value))
    if name in ("parameter_sets", "credential_sets"):
        return list(value)
    return value


def _document_name(field_name: str) -> str:
    return _DOCUMENT_NAMES.get(field_name, field_name)


_KEY = re.compile(r"\['((?:[^'\\]|\\.)*)'\]")


def document_path(path: str, resource_prefix: str, doc_prefix: str) -> str:
    """A resource field path (``installation.parameter_sets[0]``) as the document's path."""
    rest = path.removeprefix(resource_prefix)
    head = re.match(r"[A-Za-z_]+", rest)
    if head is not None:
        rest = _document_name(head.group(0)) + rest[head.end() :]
    rest = _KEY.sub(lambda m: f".{m.group(1)}", rest)
    if rest.startswith("credentials.") and resource_prefix == "installation.":
        rest = "credentialSets." + rest.removeprefix("credentials.")  # a run's credential check
    return join(doc_prefix, rest) if doc_prefix else rest


@contextmanager
def document_paths(doc_prefix: str, resource_prefix: str) -> Iterator[None]:
    """Re-raises INVALID_ARGUMENT with the violations' paths in the document."""
    try:
        yield
    except InvalidArgument as exc:
        violations = [
            FieldViolation(document_path(v.field, resource_prefix, doc_prefix), v.description)
            for v in exc.violations
        ]
        # The resource rules' generic reason becomes the documents' one; specific ones stay.
        reason = "INVALID_DOCUMENT" if exc.reason == InvalidArgument.default_reason else exc.reason
        raise InvalidArgument.from_violations(violations, reason=reason) from None


__all__ = [
    "CREATED",
    "UNCHANGED",
    "UPDATED",
    "DocumentService",
    "InstallationApplied",
    "InstallationExport",
    "SetApplied",
    "document_path",
]
