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
- ``ListInstallationLatestOutputs`` (pkg/porter/outputs.go, ``GetLastOutputs``): per output
  name, the value from the most recent run that produced it, whatever that run's result,
  sorted by name. Porter stores each output as the bytes the bundle wrote and hands them out
  as a JSON string, so the operator's ``GetStringValue()`` sees strings as they are and every
  other value as JSON text; we render our stored JSON the same way (compact JSON).

Where this server differs on purpose (same wire): a missing installation is NOT_FOUND, bad
filters are INVALID_ARGUMENT, an installation without outputs answers an empty list, and
sensitive values are withheld unless the caller may see them (``reveal_sensitive``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

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
)
from porter_bundle import store
from porter_bundle.errors import Violations
from porter_bundle.service.filters import check_list_filters, list_filter
from porter_bundle.service.installations import installation_not_found
from porter_bundle.store import Database, PageSpec
from porter_bundle.validation import check_address

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


def porter_text(value_json: str) -> str:
    """An output value as Porter hands it out: a string as it is, anything else as JSON text."""
    value = json.loads(value_json)
    return value if isinstance(value, str) else value_json


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
    ) -> list[legacy.Installation]:
        """Installations matching Porter's filters, in Porter's order (see the module doc)."""
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
        return found

    def latest_outputs(
        self, namespace: str, name: str, *, reveal_sensitive: bool
    ) -> list[legacy.PorterValue]:
        """Per output name, the most recent value (any run result), sorted by name.

        A sensitive value is left unset unless ``reveal_sensitive``; NOT_FOUND when the
        installation does not exist; empty when it has no outputs yet.
        """
        check_address(namespace, name)
        with self._store.read() as conn:
            pointers = store.get_installation_pointers(conn, namespace, name)
            if pointers is None:
                raise installation_not_found(namespace, name)
            rows = store.list_latest_outputs(conn, pointers[0])
        values = []
        for doc, value_json in rows:
            out = Output.FromString(doc)
            pv = legacy.PorterValue(name=out.name, type=out.type, sensitive=out.sensitive)
            if reveal_sensitive or not out.sensitive:
                pv.value.string_value = porter_text(value_json)
            values.append(pv)
        return values
