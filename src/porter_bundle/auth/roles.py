"""Roles and what each implies.

=============== ======================================================================
viewer          read installations, runs, outputs (sensitive values withheld), sets
editor          viewer + create, update and delete resources
operator        editor + execute and cancel actions
secret-reader   reveal sensitive values (sensitive outputs and parameters, literal
                credential values); implies nothing else
=============== ======================================================================

A binding gives a role in a list of namespaces: ``""`` is the global namespace, ``*``
every namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VIEWER = "viewer"
EDITOR = "editor"
OPERATOR = "operator"
SECRET_READER = "secret-reader"
ALL_NAMESPACES = "*"

IMPLIES: Mapping[str, frozenset[str]] = {
    VIEWER: frozenset({VIEWER}),
    EDITOR: frozenset({VIEWER, EDITOR}),
    OPERATOR: frozenset({VIEWER, EDITOR, OPERATOR}),
    SECRET_READER: frozenset({SECRET_READER}),
}
ROLES = tuple(IMPLIES)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a name and, per role it holds, the namespaces it holds it in."""

    name: str
    bindings: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Effective role -> namespaces (implied roles expanded)."""

    @classmethod
    def bound(cls, name: str, roles: Mapping[str, Iterable[str]]) -> Principal:
        """A principal from its role bindings as written (implied roles are added here)."""
        effective: dict[str, set[str]] = {}
        for role, namespaces in roles.items():
            for implied in IMPLIES[role]:
                effective.setdefault(implied, set()).update(namespaces)
        return cls(name, {r: frozenset(ns) for r, ns in effective.items()})

    def has(self, role: str, namespace: str) -> bool:
        """Whether the principal holds ``role`` in ``namespace``."""
        found = self.bindings.get(role, frozenset())
        return namespace in found or ALL_NAMESPACES in found

    def has_everywhere(self, role: str) -> bool:
        """Whether the principal holds ``role`` in every namespace (a ``*`` binding)."""
        return ALL_NAMESPACES in self.bindings.get(role, frozenset())

    def has_anywhere(self, role: str) -> bool:
        """Whether the principal holds ``role`` in at least one namespace."""
        return bool(self.bindings.get(role))

    def namespaces(self, role: str) -> frozenset[str] | None:
        """The namespaces where the principal holds ``role``; None means every namespace."""
        found = self.bindings.get(role, frozenset())
        return None if ALL_NAMESPACES in found else found


LOCAL = Principal.bound("local", {role: [ALL_NAMESPACES] for role in ROLES})
"""The caller when authentication is off: every role everywhere."""
