"""Persistence: the database, its SQLModel tables and migrations, and the typed queries
over them. Callers use this package only: ``from porter_bundle import store``, then
``store.Database(url, keyring=...)`` and, on its sessions and readers, the query functions
(``store.get_installation(session, ...)``, ``store.list_runs(reader, ...)``).

Its modules, by what they do:

* :mod:`~porter_bundle.store.engine`: :class:`Database`, connections, transactions, migrations;
* :mod:`~porter_bundle.store.errors`: database errors translated into domain errors;
* :mod:`~porter_bundle.store.queries`: the compiled-query cache and the raw :class:`Reader`;
* :mod:`~porter_bundle.store.listing`: list filters, pages, counts;
* :mod:`~porter_bundle.store.secrets` and :mod:`~porter_bundle.store.crypto`: secrets at rest;
* :mod:`~porter_bundle.store.models` and :mod:`~porter_bundle.store.migrate`: the schema;
* the queries of each resource: ``installations``, ``value_sets``, ``runs``, ``run_logs``,
  ``outputs``, ``bundles``.
"""

from porter_bundle.store.bundles import (
    add_bundle_ref,
    count_bundles,
    delete_bundle_ref,
    find_bundle_ref,
    get_bundle,
    get_bundle_document,
    get_bundle_ref,
    list_bundles,
    put_bundle_document,
    replace_bundle_ref,
)
from porter_bundle.store.crypto import (
    CryptoError,
    KeyFileError,
    Keyring,
    UnknownKey,
    create_key_file,
    parse_key,
    read_key_file,
    rotate_key_file,
)
from porter_bundle.store.engine import Database
from porter_bundle.store.errors import DuplicateKey
from porter_bundle.store.installations import (
    add_installation,
    count_installations,
    delete_installation,
    get_installation,
    get_installation_doc,
    get_installation_pointers,
    get_installation_secrets,
    installation_secrets,
    installations_using_set,
    list_installations,
    set_installation_children,
    set_installation_secrets,
)
from porter_bundle.store.listing import (
    KIND_BUNDLE,
    KIND_CREDENTIAL_SET,
    KIND_INSTALLATION,
    KIND_PARAMETER_SET,
    ListFilter,
    Page,
    PageSpec,
)
from porter_bundle.store.models import (
    BundleDocumentRow,
    BundleRefRow,
    InstallationLabelRow,
    InstallationRow,
    InstallationSetRefRow,
    LatestOutputRow,
    OutputRow,
    ResourceCountRow,
    RunLogChunkRow,
    RunRow,
    ValueSetLabelRow,
    ValueSetRow,
)
from porter_bundle.store.outputs import (
    add_outputs,
    list_latest_outputs,
    list_output_docs,
    list_output_values,
)
from porter_bundle.store.queries import Reader
from porter_bundle.store.run_logs import (
    append_run_log,
    get_run_log,
    get_run_log_length,
    read_run_log,
    replace_run_log,
)
from porter_bundle.store.runs import (
    active_run,
    active_run_docs,
    add_run,
    count_runs,
    get_last_succeeded_run,
    get_latest_run_doc,
    get_run_by_request,
    get_run_doc,
    get_run_doc_by_id,
    get_run_doc_by_request,
    get_run_parameters,
    get_run_state,
    list_runs,
)
from porter_bundle.store.secrets import SECRET_COLUMNS, SecretColumn
from porter_bundle.store.value_sets import (
    add_value_set,
    count_value_sets,
    delete_value_set,
    get_value_set,
    get_value_set_doc,
    get_value_set_values,
    list_value_sets,
    set_value_set_labels,
    update_value_set,
    value_set_values,
)

__all__ = [
    "KIND_BUNDLE",
    "KIND_CREDENTIAL_SET",
    "KIND_INSTALLATION",
    "KIND_PARAMETER_SET",
    "SECRET_COLUMNS",
    "BundleDocumentRow",
    "BundleRefRow",
    "CryptoError",
    "Database",
    "DuplicateKey",
    "InstallationLabelRow",
    "InstallationRow",
    "InstallationSetRefRow",
    "KeyFileError",
    "Keyring",
    "LatestOutputRow",
    "ListFilter",
    "OutputRow",
    "Page",
    "PageSpec",
    "Reader",
    "ResourceCountRow",
    "RunLogChunkRow",
    "RunRow",
    "SecretColumn",
    "UnknownKey",
    "ValueSetLabelRow",
    "ValueSetRow",
    "active_run",
    "active_run_docs",
    "add_bundle_ref",
    "add_installation",
    "add_outputs",
    "add_run",
    "add_value_set",
    "append_run_log",
    "count_bundles",
    "count_installations",
    "count_runs",
    "count_value_sets",
    "create_key_file",
    "delete_bundle_ref",
    "delete_installation",
    "delete_value_set",
    "find_bundle_ref",
    "get_bundle",
    "get_bundle_document",
    "get_bundle_ref",
    "get_installation",
    "get_installation_doc",
    "get_installation_pointers",
    "get_installation_secrets",
    "get_last_succeeded_run",
    "get_latest_run_doc",
    "get_run_by_request",
    "get_run_doc",
    "get_run_doc_by_id",
    "get_run_doc_by_request",
    "get_run_log",
    "get_run_log_length",
    "get_run_parameters",
    "get_run_state",
    "get_value_set",
    "get_value_set_doc",
    "get_value_set_values",
    "installation_secrets",
    "installations_using_set",
    "list_bundles",
    "list_installations",
    "list_latest_outputs",
    "list_output_docs",
    "list_output_values",
    "list_runs",
    "list_value_sets",
    "parse_key",
    "put_bundle_document",
    "read_key_file",
    "read_run_log",
    "replace_bundle_ref",
    "replace_run_log",
    "rotate_key_file",
    "set_installation_children",
    "set_installation_secrets",
    "set_value_set_labels",
    "update_value_set",
    "value_set_values",
]
