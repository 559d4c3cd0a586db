"""Installations: validation, create/update/delete rules and reads.

Sensitive parameters: when an installation is written and its bundle is known here (registered,
or resolved/pulled before), the values of the parameters its bundle marks sensitive
(``writeOnly``) leave the stored Installation message: they are kept encrypted beside it
(``installations.secret_parameters``) and the message names them in ``sensitive_parameters``.
Reads return the message without them (:meth:`InstallationService.get` with ``reveal`` adds them
back); runs and apply's comparisons use every value (:meth:`InstallationService.parameters_of`).
When the bundle is unknown at write time, values are stored as given, except those withheld
before (once withheld, always withheld while set); the next write with a known bundle withholds
the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_DEFINED,
    Installation,
    InstallationStatus,
)
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, ACTION_UPGRADE, RUN_STATE_SUCCEEDED, Run
from porter_bundle import store
from porter_bundle.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violations,
)
from porter_bundle.ids import new_id
from porter_bundle.service.common import (
    Clock,
    check_etag,
    check_struct,
    display_address,
    mask_fields,
    new_etag,
    timestamp,
    utcnow,
)
from porter_bundle.service.filters import check_list_filters, list_filter
from porter_bundle.service.paging import PageResult, fingerprint, finish_page, parse_page_request
from porter_bundle.service.withheld import (
    decoded_secrets,
    encoded_secrets,
    sensitive_names,
    withhold,
)
from porter_bundle.store import Database, DuplicateKey, InstallationRow
from porter_bundle.validation import (
    BundleRef,
    check_address,
    check_bundle_ref,
    check_labels,
    check_name,
    check_namespace,
    check_set_names,
)

if TYPE_CHECKING:
    from porter_bundle.service.bundles import ResolvedBundle

DEFAULT_SCHEMA_VERSION = "1.0.2"
_SCHEMA_VERSION = re.compile(r"\d+\.\d+\.\d+")

# Fields an update may change; the mask names them as the proto does.
UPDATABLE_FIELDS = (
    "labels",
    "bundle",
    "parameters",
    "parameter_sets",
    "credential_sets",
    "uninstalled",
    "custom",
    "schema_version",
)


def bundle_ref_of(inst: Installation) -> BundleRef:
    """The installation's bundle reference as a value."""
    b = inst.bundle
    return BundleRef(b.repository, b.digest, b.version, b.tag)


class InstallationService:
    """Creates, changes, deletes and reads installations."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utcnow,
        resolve_bundle: Callable[[BundleRef], ResolvedBundle] | None = None,
        find_bundle: Callable[[BundleRef], ResolvedBundle | None] | None = None,
    ) -> None:
        self._store = db
        self._clock = clock
        self._resolve_bundle = resolve_bundle
        """Resolves (pulls) a bundle reference before it is stored; None = stored unresolved."""
        self._find_bundle = find_bundle
        """The bundle a reference names when it is known here (no network), else None."""

    def list(
        self,
        *,
        namespace: str,
        all_namespaces: bool,
        name: str,
        labels: Mapping[str, str],
        page_size: int,
        page_token: str,
        skip: int,
        visible: frozenset[str] | None = None,
    ) -> PageResult:
        """A page of serialized Installation messages sorted by (namespace, name); over every
        namespace, only those in ``visible`` (None: all)."""
        v = Violations()
        check_list_filters(v, namespace, all_namespaces, name, labels)
        v.raise_if_any()
        flt = list_filter(namespace, all_namespaces, name, labels, visible)
        req = parse_page_request(
            page_size,
            page_token,
            skip,
            filters_fingerprint=fingerprint(
                "installations", flt.namespace, name, dict(labels), flt.visible
            ),
            key_length=2,
        )
        with self._store.read() as conn:
            page = store.list_installations(conn, flt, req.spec)
            return finish_page(
                req,
                page,
                lambda: store.count_installations(conn, flt),
                carry_total=not flt.counts_suffice,
            )

    def get(self, namespace: str, name: str, *, reveal: bool = False) -> Installation:
        """One installation; NOT_FOUND when missing. With ``reveal`` (an authorized, audited
        caller) the values of its sensitive parameters are in ``parameters`` too."""
        check_address(namespace, name)
        with self._store.read() as conn:
            doc = store.get_installation_doc(conn, namespace, name)
            if doc is None:
                raise _not_found(namespace, name)
            inst = Installation.FromString(doc)
            if reveal and inst.sensitive_parameters:
                inst.parameters.update(
                    decoded_secrets(store.get_installation_secrets(conn, inst.id))
                )
        return inst

    def parameters_of(self, inst: Installation) -> dict[str, Any]:
        """Every parameter value set on ``inst``, its withheld sensitive ones included (for
        runs and comparisons, never for responses)."""
        values: dict[str, Any] = json_format.MessageToDict(inst.parameters)
        if inst.sensitive_parameters and inst.id:
            with self._store.read() as conn:
                values.update(decoded_secrets(store.get_installation_secrets(conn, inst.id)))
        return values

    def revealed(self, inst: Installation) -> Installation:
        """A copy of ``inst`` with its withheld sensitive values back in ``parameters``."""
        copy = Installation()
        copy.CopyFrom(inst)
        if inst.sensitive_parameters and inst.id:
            copy.parameters.Clear()
            copy.parameters.update(self.parameters_of(inst))
        return copy

    def withheld(
        self, inst: Installation, bundle: ResolvedBundle | None, before: Sequence[str] = ()
    ) -> Installation:
        """A copy of ``inst`` (not stored) without the values ``bundle`` marks sensitive or that
        were withheld ``before``, as a write would store it (for responses about a desired state
        that is not stored, e.g. a dry run)."""
        copy = Installation()
        copy.CopyFrom(inst)
        copy.sensitive_parameters.extend(before)
        withhold(copy, {}, sensitive_names(bundle))
        return copy

    def _sensitive_names_of(
        self, ref: BundleRef, resolved: ResolvedBundle | None
    ) -> frozenset[str] | None:
        """Names of the parameters the bundle marks sensitive; None when it is not known here."""
        if resolved is None and self._find_bundle is not None:
            resolved = self._find_bundle(ref)
        return sensitive_names(resolved)

    def create(self, given: Installation) -> Installation:
        """Stores a new installation; ALREADY_EXISTS when its address is taken."""
        inst = Installation()
        _copy_writable(given, inst, UPDATABLE_FIELDS)
        inst.namespace, inst.name = given.namespace, given.name
        if not inst.schema_version:
            inst.schema_version = DEFAULT_SCHEMA_VERSION
        _validate(inst, "installation.")
        resolved = None
        if self._resolve_bundle is not None:
            resolved = self._resolve_bundle(bundle_ref_of(inst))
        secrets = withhold(inst, {}, self._sensitive_names_of(bundle_ref_of(inst), resolved))
        now = self._clock()
        inst.id = new_id()
        inst.create_time.CopyFrom(timestamp(now))
        inst.update_time.CopyFrom(timestamp(now))
        inst.etag = new_etag()
        inst.status.CopyFrom(InstallationStatus(state=INSTALLATION_STATE_DEFINED))
        row = InstallationRow(
            id=inst.id,
            namespace=inst.namespace,
            name=inst.name,
            etag=inst.etag,
            doc=inst.SerializeToString(),
            created_at=now,
            updated_at=now,
            state=INSTALLATION_STATE_DEFINED,
        )
        try:
            with self._store.write() as s:
                store.set_installation_secrets(s, row, encoded_secrets(secrets))
                store.add_installation(
                    s, row, inst.labels, inst.credential_sets, inst.parameter_sets
                )
        except DuplicateKey:
            raise AlreadyExists(
                f"installation {display_address(inst.namespace, inst.name)} already exists",
                reason="INSTALLATION_EXISTS",
                metadata={"namespace": inst.namespace, "name": inst.name},
            ) from None
        return inst

    def update(self, given: Installation, paths: Sequence[str]) -> Installation:
        """Changes the fields in ``paths`` (all writable ones when empty); ABORTED on a stale etag."""
        check_address(given.namespace, given.name, prefix="installation.")
        fields = mask_fields(paths, UPDATABLE_FIELDS)
        resolved = None
        if self._resolve_bundle is not None and "bundle" in fields and given.HasField("bundle"):
            # Before the transaction: resolving may reach a registry.
            v = Violations()
            check_bundle_ref(v, "installation.bundle", bundle_ref_of(given))
            v.raise_if_any()
            resolved = self._resolve_bundle(bundle_ref_of(given))
        # Which parameters the bundle the installation will have marks sensitive (looked up
        # before the transaction too; None when the bundle is not known here).
        if "bundle" in fields:
            sensitive = self._sensitive_names_of(bundle_ref_of(given), resolved)
        else:
            with self._store.read() as conn:
                doc = store.get_installation_doc(conn, given.namespace, given.name)
            sensitive = (
                None
                if doc is None
                else self._sensitive_names_of(bundle_ref_of(Installation.FromString(doc)), None)
            )
        with self._store.write() as s:
            row = store.get_installation(s, given.namespace, given.name)
            if row is None:
                raise _not_found(given.namespace, given.name)
            check_etag(
                given.etag, row.etag, f"installation {display_address(row.namespace, row.name)}"
            )
            inst = Installation.FromString(row.doc)
            # Without "parameters" in the mask, the values withheld before are kept.
            kept = (
                {}
                if "parameters" in fields
                else decoded_secrets(store.installation_secrets(s, row))
            )
            _copy_writable(given, inst, fields)
            if not inst.schema_version:
                inst.schema_version = DEFAULT_SCHEMA_VERSION
            _validate(inst, "installation.")
            secrets = withhold(inst, kept, sensitive)
            now = self._clock()
            inst.update_time.CopyFrom(timestamp(now))
            inst.etag = new_etag()
            row.etag, row.updated_at, row.doc = inst.etag, now, inst.SerializeToString()
            store.set_installation_secrets(s, row, encoded_secrets(secrets))
            s.add(row)
            store.set_installation_children(
                s, row.id, inst.labels, inst.credential_sets, inst.parameter_sets
            )
        return inst

    def merged(self, current: Installation | None, given: Installation) -> Installation:
        """What create (``current`` None) or an update of every writable field would store, checked
        like them (INVALID_ARGUMENT); nothing written. For desired-state apply and its dry runs."""
        inst = Installation()
        if current is not None:
            inst.CopyFrom(current)
        _copy_writable(given, inst, UPDATABLE_FIELDS)
        del inst.sensitive_parameters[:]  # every parameter is the given one, all in clear
        inst.namespace, inst.name = given.namespace, given.name
        if not inst.schema_version:
            inst.schema_version = DEFAULT_SCHEMA_VERSION
        _validate(inst, "installation.")
        return inst

    def last_successful_change(self, installation_id: str) -> tuple[Run, dict[str, Any]] | None:
        """The installation's most recent SUCCEEDED install or upgrade run, with every parameter
        value it used (sensitive ones included: for comparing, never for responses), or None."""
        with self._store.read() as conn:
            found = store.get_last_succeeded_run(
                conn, installation_id, (ACTION_INSTALL, ACTION_UPGRADE), RUN_STATE_SUCCEEDED
            )
        if found is None:
            return None
        parameters: dict[str, Any] = json.loads(found[1])
        return Run.FromString(found[0]), parameters

    def delete(self, namespace: str, name: str, *, force: bool, etag: str) -> None:
        """Deletes an installation with its runs and outputs (refused while installed unless forced)."""
        check_address(namespace, name)
        with self._store.write() as s:
            row = store.get_installation(s, namespace, name)
            if row is None:
                raise _not_found(namespace, name)
            check_etag(etag, row.etag, f"installation {display_address(namespace, name)}")
            inst = Installation.FromString(row.doc)
            if row.installed and not force:
                raise FailedPrecondition(
                    f"installation {display_address(namespace, name)} is installed (its last modifying "
                    f"action, {inst.status.action or 'unknown'}, was not a successful uninstall); "
                    "uninstall it first or delete with force",
                    reason="INSTALLATION_INSTALLED",
                    metadata={
                        "namespace": namespace,
                        "name": name,
                        "last_action": inst.status.action,
                    },
                )
            store.delete_installation(s, row)


def _not_found(namespace: str, name: str) -> NotFound:
    return NotFound(
        f"installation {display_address(namespace, name)} not found",
        reason="INSTALLATION_NOT_FOUND",
        metadata={"namespace": namespace, "name": name},
    )


def installation_not_found(namespace: str, name: str) -> NotFound:
    """The NOT_FOUND error for a missing installation (shared with runs)."""
    return _not_found(namespace, name)


def _copy_writable(src: Installation, dst: Installation, fields: Sequence[str]) -> None:
    for f in fields:
        if f == "labels":
            dst.labels.clear()
            dst.labels.update(src.labels)
        elif f in ("parameter_sets", "credential_sets"):
            target = getattr(dst, f)
            del target[:]
            target.extend(getattr(src, f))
        elif f in ("bundle", "parameters", "custom"):
            getattr(dst, f).CopyFrom(getattr(src, f))
            if not src.HasField(f):  # type: ignore[arg-type]
                dst.ClearField(f)  # type: ignore[arg-type]
        else:
            setattr(dst, f, getattr(src, f))


def _validate(inst: Installation, prefix: str) -> None:
    v = Violations()
    check_namespace(v, f"{prefix}namespace", inst.namespace)
    check_name(v, f"{prefix}name", inst.name)
    if not _SCHEMA_VERSION.fullmatch(inst.schema_version):
        v.add(f"{prefix}schema_version", "must be a version such as 1.0.2")
    check_labels(v, f"{prefix}labels", inst.labels)
    if not inst.HasField("bundle"):
        v.add(f"{prefix}bundle", "bundle is required (repository plus digest, version or tag)")
    else:
        check_bundle_ref(v, f"{prefix}bundle", bundle_ref_of(inst))
    check_set_names(v, f"{prefix}parameter_sets", inst.parameter_sets)
    check_set_names(v, f"{prefix}credential_sets", inst.credential_sets)
    check_struct(v, f"{prefix}parameters", inst.parameters)
    check_struct(v, f"{prefix}custom", inst.custom)
    v.raise_if_any()


__all__ = ["InstallationService", "InvalidArgument", "installation_not_found"]
