"""The filters of list calls over namespaced resources (installations, credential and parameter
sets): checked once, turned into the store's :class:`~porter_bundle.store.ListFilter`."""

from __future__ import annotations

from collections.abc import Mapping

from porter_bundle.errors import Violations
from porter_bundle.store import ListFilter
from porter_bundle.validation import check_labels, check_namespace


def check_list_filters(
    v: Violations, namespace: str, all_namespaces: bool, name: str, labels: Mapping[str, str]
) -> None:
    """Filters shared by the list calls of namespaced resources."""
    if not all_namespaces:
        check_namespace(v, "namespace", namespace)
    if len(name) > 253:
        v.add("name", "name filter is longer than 253 characters")
    check_labels(v, "labels", labels)


def list_filter(
    namespace: str,
    all_namespaces: bool,
    name: str,
    labels: Mapping[str, str],
    visible: frozenset[str] | None = None,
) -> ListFilter:
    """The store filter of a namespaced list request; ``visible`` limits a list over every
    namespace to the namespaces the caller may see (None: all)."""
    if not all_namespaces:
        visible = None  # one namespace: the caller's right to it was checked before
    return ListFilter(None if all_namespaces else namespace, name, dict(labels), visible)
