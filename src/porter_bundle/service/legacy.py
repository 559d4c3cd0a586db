"""Porter's legacy API (``porter.v1alpha1.Porter``): installations and latest outputs in Porter's shapes.

What Porter computes is followed as Porter does it (getporter/porter):

- ``ListInstallations`` (pkg/porter/list.go, pkg/storage): namespace "" is global, ``"*"`` or
  ``allNamespaces`` is every namespace; name is a substring; labels are ANDed; the store sorts by
  (namespace, name) and applies skip and limit (0 = no limit); Porter then orders the page by
  ``status.modified``, most recent first (``sort.Reverse`` over ``DisplayInstallations``).
- ``_calculated.displayInstallationState``: "installed" when the bundle's latest successful
  install is newer than its latest successful uninstall, "uninstalled" in the opposite case,
  else "defined" (``Installation.IsInstalled``/``IsUninstalled``).
  ``displayInstallationStatus``: "succeeded"/"failed" as the result says; while running,
  "installing", "upgrading", "uninstalling" or "running <action>"; otherwise "".
- ``ListInstallationLatestOutputs`` (pkg/porter/outputs.go, ``GetLastOutputs`` and
  ``NewDisplayValuesFromOutputs``): per output name, the value from the most recent run that
  produced it, whatever that run's result, sorted by name; only the outputs the bundle defines
  (here: the bundle of the latest run that produced outputs, so an output a newer bundle
  version dropped is no longer listed), without those Porter marks internal (their
  definition's ``$comment`` is ``porter-internal``: ``porter-state``, in every Porter-built
  bundle, is Terraform state and the like; recorded with the output, so it stays skipped
  when the bundle is no longer stored). Each value is the text the bundle wrote
  (``1.50`` stays ``1.50``, ``42\n`` keeps its newline, an object as written), as Porter
  stores and hands out the bytes; rows stored before the written text was kept render from
  the JSON value (a string as it is, anything else as compact JSON). The type is the
  definition's, or ``file`` for a base64 string in a bundle that supports file parameters
  (``ExtendedBundle.GetParameterType``).
- ``ListInstallations`` that would not fit a gRPC client's default 4 MiB receive limit is
  RESOURCE_EXHAUSTED (page with ``limit`` and ``skip``) rather than a response no client takes.
- The Porter operator reads latest outputs with grpc-go's default 4 MiB receive limit and copies every
  value into one Kubernetes resource (1.5 MiB by default in etcd): a response is kept within
  :data:`MAX_OUTPUTS_RESPONSE_BYTES` by leaving out the largest values (the outputs stay
  listed, their ``value`` unset, and the server log says which).

Where this server differs on purpose (same wire): a missing installation is NOT_FOUND, bad
filters are INVALID_ARGUMENT, an installation without outputs answers an empty list, and
sensitive values are withheld unless the caller may see them (``reveal_sensitive``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from installation.v1alpha1 import installation_pb2 as legacy
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    Installation,
)
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Output,
    Run,
)
from porter_bundle import store
from porter_bundle.bundles import cnab
from porter_bundle.errors import ResourceExhausted, Violations
from porter_bundle.service.common import display_address
from porter_bundle.service.filters import check_list_filters, list_filter
from porter_bundle.service.installations import installation_not_found
from porter_bundle.service.runs import rendered_text
from porter_bundle.store import Database, PageSpec
from porter_bundle.validation import check_address

log = logging.getLogger(__name__)

SCHEMA_TYPE = "Installation"
ALL_NAMESPACES = "*"
# "No limit" as a LIMIT every database accepts (the store binds LIMIT and OFFSET as 32-bit
# integers and asks for one row more); skip is clamped to it too.
NO_LIMIT = 2**31 - 2

# Porter's result status strings (cnab-go claim.Status*).
RESULT_STATUS = {
    RUN_STATE_PENDING: "pending",
    RUN_STATE_RUNNING: "running",
    RUN_STATE_SUCCEEDED: "succeeded",
    RUN_STATE_FAILED: "failed",
    RUN_STATE_CANCELED: "canceled",
}
STATE_DEFINED, STATE_INSTALLED, STATE_UNINSTALLED = "defined", "installed", "uninstalled"
# Porter's display status of a running modifying action.
RUNNING_STATUS = {"install": "installing", "upgrade": "upgrading", "uninstall": "uninstalling"}

# A substring of a name: name characters only (no anchors, as any slice of a name may start
# or end with "." or "-").
_NAME_FILTER = re.compile(r"[A-Za-z0-9._-]*")


def display_state(inst: Installation) -> str:
    """Porter's ``displayInstallationState`` of an installation."""
    if inst.status.state == INSTALLATION_STATE_INSTALLED:
        return STATE_INSTALLED
    if inst.status.state == INSTALLATION_STATE_UNINSTALLED:
        return STATE_UNINSTALLED
    return STATE_DEFINED


def display_status(result_status: str, action: str) -> str:
    """Porter's ``displayInstallationStatus`` of the last result and action."""
    if result_status in ("succeeded", "failed"):
        return result_status
    if result_status == "running":
        return RUNNING_STATUS.get(action, f"running {action}")
    return ""


def to_legacy(inst: Installation) -> legacy.Installation:
    """An installation in Porter's legacy shape, field by field."""
    st = inst.status
    result_status = RESULT_STATUS.get(st.run_state, "") if st.run_id else ""
    out = legacy.Installation(
        id=inst.id,
        schemaType=SCHEMA_TYPE,
        schemaVersion=inst.schema_version,
        name=inst.name,
        namespace=inst.namespace,
        bundle=legacy.Bundle(
            repository=inst.bundle.repository,
            version=inst.bundle.version or inst.bundle.tag,
        ),
        credentialSets=list(inst.credential_sets),
        parameterSets=list(inst.parameter_sets),
        status=legacy.InstallationStatus(
            runId=st.run_id,
            action=st.action,
            resultId=st.run_id,
            resultStatus=result_status,
            bundleReference=st.bundle_reference,
            bundleVersion=st.bundle_version,
            bundleDigest=st.bundle_digest,
        ),
        calculated=legacy.Calculated(
            displayInstallationState=display_state(inst),
            displayInstallationStatus=display_status(result_status, st.action),
        ),
    )
    out.status.created.CopyFrom(inst.create_time)
    out.status.modified.CopyFrom(inst.update_time)
    if st.HasField("install_time"):
        out.status.installed.CopyFrom(st.install_time)
    if st.HasField("uninstall_time"):
        out.status.uninstalled.CopyFrom(st.uninstall_time)
    return out


PORTER_EXTENSION = "sh.porter"
FILE_PARAMETERS_EXTENSION = "sh.porter.file-parameters"
MAX_OUTPUTS_RESPONSE_BYTES = 1024 * 1024
"""ListInstallationLatestOutputs stays within this: well below grpc-go's default 4 MiB
receive limit, and within what one Kubernetes resource (the operator's InstallationOutput,
1.5 MiB in etcd by default) can hold with its metadata."""


MAX_LIST_RESPONSE_BYTES = 4 * 1024 * 1024 - 64 * 1024
"""ListInstallations answers at most this (grpc-go's and grpc's default 4 MiB receive limit,
less room for the frame): more is RESOURCE_EXHAUSTED, asking for paging with limit and skip."""


def porter_text(value_json: str, written: str | None = None) -> str:
    """An output value as Porter hands it out: the text the bundle wrote when kept, else a
    string as it is and anything else as JSON text."""
    return written if written is not None else rendered_text(value_json)


@dataclass(frozen=True)
class _BundleOutputs:
    """What Porter's legacy API needs from the bundle of the run that produced outputs."""

    listed: frozenset[str]
    """Outputs the bundle defines, without Porter's internal ones."""
    types: dict[str, str]


def _bundle_outputs(bundle: dict[str, Any]) -> _BundleOutputs:
    custom = bundle.get("custom")
    extensions = bundle.get("requiredExtensions")
    files = (isinstance(custom, dict) and PORTER_EXTENSION in custom) or (
        isinstance(extensions, list) and FILE_PARAMETERS_EXTENSION in extensions
    )
    listed, types = set(), {}
    for d in cnab.outputs(bundle):
        if d.internal:
            continue
        listed.add(d.name)
        is_file = d.type == "string" and d.schema.get("contentEncoding") == "base64"
        types[d.name] = "file" if files and is_file else d.type
    return _BundleOutputs(frozenset(listed), types)


def _within(values: list[legacy.PorterValue], limit: int, where: str) -> None:
    """Leaves out the largest values until the response fits ``limit`` bytes."""
    size = legacy.ListInstallationLatestOutputResponse(outputs=values).ByteSize()
    by_size = sorted(
        (v for v in values if v.HasField("value")), key=lambda v: v.value.ByteSize(), reverse=True
    )
    for v in by_size:
        if size <= limit:
            return
        before = v.ByteSize()
        v.ClearField("value")
        size -= before - v.ByteSize()
        log.warning(
            "ListInstallationLatestOutputs %s: the value of output %r (%d bytes) is left out: "
            "the response must stay within %d bytes for the Porter operator",
            where,
            v.name,
            before,
            limit,
        )


class LegacyService:
    """Answers porter.v1alpha1.Porter's calls from the store."""

    def __init__(self, db: Database) -> None:
        self._store = db

    def list_installations(
        self,
        *,
        name: str,
        namespace: str,
        all_namespaces: bool,
        labels: Mapping[str, str],
        limit: int,
        skip: int,
        visible: frozenset[str] | None = None,
        max_bytes: int = MAX_LIST_RESPONSE_BYTES,
    ) -> list[legacy.Installation]:
        """Installations matching Porter's filters, in Porter's order (see the module doc);
        RESOURCE_EXHAUSTED when they would not fit in ``max_bytes``."""
        every = all_namespaces or namespace == ALL_NAMESPACES
        v = Violations()
        check_list_filters(v, namespace, every, name, labels)
        if not _NAME_FILTER.fullmatch(name):
            v.add("name", "name filter may contain only letters, digits, '.', '_' and '-'")
        if limit < 0:
            v.add("limit", "must not be negative (0 means no limit)")
        if skip < 0:
            v.add("skip", "must not be negative")
        v.raise_if_any()
        flt = list_filter(namespace, every, name, labels, visible)
        spec = PageSpec(limit=min(limit, NO_LIMIT) or NO_LIMIT, skip=min(skip, NO_LIMIT))
        with self._store.read() as conn:
            page = store.list_installations(conn, flt, spec)
        found = [to_legacy(Installation.FromString(doc)) for doc in page.docs]
        # Porter orders what the store returned by modification time, newest first (stable
        # here: ties keep the store's (namespace, name) order).
        found.sort(key=lambda i: i.status.modified.ToNanoseconds(), reverse=True)
        size = legacy.ListInstallationsResponse(installation=found).ByteSize()
        if size > max_bytes:
            raise ResourceExhausted(
                f"the {len(found)} matching installations make a {size}-byte response, more "
                f"than the {max_bytes} bytes a gRPC client receives by default; "
                "page with limit and skip",
                reason="RESPONSE_TOO_LARGE",
                metadata={"installations": str(len(found)), "max_bytes": str(max_bytes)},
            )
        return found

    def latest_outputs(
        self,
        namespace: str,
        name: str,
        *,
        reveal_sensitive: bool,
        max_bytes: int = MAX_OUTPUTS_RESPONSE_BYTES,
    ) -> list[legacy.PorterValue]:
        """Per output name, the most recent value (any run result), sorted by name, as Porter
        lists them (see the module doc); at most ``max_bytes`` in all.

        A sensitive value is left unset unless ``reveal_sensitive``; NOT_FOUND when the
        installation does not exist; empty when it has no outputs yet.
        """
        check_address(namespace, name)
        with self._store.read() as conn:
            pointers = store.get_installation_pointers(conn, namespace, name)
            if pointers is None:
                raise installation_not_found(namespace, name)
            rows = store.list_latest_outputs(conn, pointers[0])
            defined = self._defined_by_latest(conn, max((r.run_id for r in rows), default=""))
        values = []
        for row in rows:
            out = Output.FromString(row.doc)
            if row.internal or (defined is not None and out.name not in defined.listed):
                continue
            kind = out.type if defined is None else defined.types[out.name]
            pv = legacy.PorterValue(name=out.name, type=kind, sensitive=out.sensitive)
            if reveal_sensitive or not out.sensitive:
                pv.value.string_value = porter_text(row.value_json, row.written)
            values.append(pv)
        _within(values, max_bytes, display_address(namespace, name))
        return values

    @staticmethod
    def _defined_by_latest(conn: Any, run_id: str) -> _BundleOutputs | None:
        """The outputs of the bundle of run ``run_id``; None when it is not known here."""
        doc = store.get_run_doc_by_id(conn, run_id) if run_id else None
        if doc is None:
            return None
        digest = Run.FromString(doc).bundle_digest
        content = store.get_bundle_document(conn, digest) if digest else None
        if content is None:
            return None
        bundle = json.loads(content)
        return _bundle_outputs(bundle) if isinstance(bundle, dict) else None
