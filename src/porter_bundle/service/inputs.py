"""A run's parameters and credentials: gathered from every source, typed, checked.

Parameter precedence, low to high (Porter's): the bundle's defaults, parameter sets
in order (the installation's, then the request's), the installation's own
parameters, the request's overrides. Values that come from sets are text and are
converted to the definition's type; every value is then checked against its
definition (type, enum, minimum/maximum, pattern, ...). Every violation is reported
at once, before any container starts. Sensitive values never enter a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft7Validator

from porter.bundle.v1.value_set_pb2 import NamedValueSource
from porter_bundle.bundles import cnab
from porter_bundle.errors import FailedPrecondition, Violations
from porter_bundle.service.sources import SourceResolver

# Looks a set up by (kind title, name) in the installation's namespace then the global one.
SetLookup = Callable[[str], Sequence[NamedValueSource] | None]


@dataclass(frozen=True)
class ResolvedInputs:
    """What a run gets: typed parameters and credential values, for one action."""

    parameters: dict[str, Any]
    sensitive: frozenset[str]
    credentials: dict[str, str]


def resolve_inputs(
    bundle: dict[str, Any],
    action: str,
    *,
    parameter_sets: Sequence[str],
    credential_sets: Sequence[str],
    installation_parameters: Mapping[str, Any],
    overrides: Mapping[str, Any],
    find_parameter_set: SetLookup,
    find_credential_set: SetLookup,
    resolver: SourceResolver,
    namespace: str = "",
) -> ResolvedInputs:
    """Resolves and checks every input of ``action`` on an installation in ``namespace`` (where
    secret sources are looked up); INVALID_ARGUMENT lists all violations."""
    v = Violations()
    params = _parameters(
        bundle,
        action,
        parameter_sets,
        installation_parameters,
        overrides,
        find_parameter_set,
        resolver,
        v,
        namespace,
    )
    creds = _credentials(
        bundle, action, credential_sets, find_credential_set, resolver, v, namespace
    )
    v.raise_if_any(reason="INVALID_INPUTS")
    defs = {p.name: p for p in cnab.parameters(bundle)}
    sensitive = frozenset(name for name in params if defs[name].sensitive)
    return ResolvedInputs(params, sensitive, creds)


def _entries(kind: str, names: Sequence[str], find: SetLookup) -> dict[str, NamedValueSource]:
    """Entries of the named sets, later sets winning."""
    merged: dict[str, NamedValueSource] = {}
    for set_name in names:
        entries = find(set_name)
        if entries is None:
            raise FailedPrecondition(
                f"{kind} {set_name!r} does not exist in the installation's namespace or the global one",
                reason=f"{kind.upper().replace(' ', '_')}_NOT_FOUND",
                metadata={"name": set_name},
            )
        for entry in entries:
            merged[entry.name] = entry
    return merged


def _parameters(
    bundle: dict[str, Any],
    action: str,
    set_names: Sequence[str],
    installation_parameters: Mapping[str, Any],
    overrides: Mapping[str, Any],
    find: SetLookup,
    resolver: SourceResolver,
    v: Violations,
    namespace: str,
) -> dict[str, Any]:
    defs = {p.name: p for p in cnab.parameters(bundle)}
    for origin, given in (
        ("installation.parameters", installation_parameters),
        ("parameters", overrides),
    ):
        for name in given:
            if name not in defs:
                v.add(f"{origin}.{name}", f"the bundle has no parameter {name!r}")
    from_sets = _entries("parameter set", set_names, find)
    values: dict[str, Any] = {}
    for name, d in defs.items():
        if not d.applies_to(action):
            continue
        if name in overrides:
            value, origin, typed = overrides[name], f"parameters.{name}", True
        elif name in installation_parameters:
            value, origin, typed = (
                installation_parameters[name],
                f"installation.parameters.{name}",
                True,
            )
        elif name in from_sets:
            entry = from_sets[name]
            value = resolver.resolve(f"parameter {name!r}", entry.source, namespace)
            origin, typed = f"parameter_sets.{name}", not isinstance(value, str)
        elif "default" in d.schema:
            value, origin, typed = d.schema["default"], f"parameters.{name}", True
        else:
            if d.required:
                v.add(f"parameters.{name}", f"required parameter {name!r} has no value")
            continue
        converted = _convert(value, d.type, typed)
        if converted is _INVALID:
            v.add(origin, f"must be of type {d.type}")
            continue
        problem = _check(converted, d.schema, d.sensitive)
        if problem:
            v.add(origin, problem)
            continue
        values[name] = converted
    return values


def _credentials(
    bundle: dict[str, Any],
    action: str,
    set_names: Sequence[str],
    find: SetLookup,
    resolver: SourceResolver,
    v: Violations,
    namespace: str,
) -> dict[str, str]:
    from_sets = _entries("credential set", set_names, find)
    values: dict[str, str] = {}
    for d in cnab.credentials(bundle):
        if not d.applies_to(action):
            continue
        entry = from_sets.get(d.name)
        if entry is None:
            if d.required:
                v.add(
                    f"credentials.{d.name}",
                    f"required credential {d.name!r} is in none of the credential sets",
                )
            continue
        value = resolver.resolve(f"credential {d.name!r}", entry.source, namespace)
        values[d.name] = value if isinstance(value, str) else json.dumps(value)
    return values


_INVALID = object()


def _convert(value: Any, type_: str, typed: bool) -> Any:
    """Text from a source becomes the definition's type; typed numbers lose a needless ``.0``."""
    if not typed and type_ and type_ != "string":
        try:
            value = json.loads(value)
        except ValueError:
            return _INVALID
    if type_ == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if type_ == "string" and not isinstance(value, str):
        return _INVALID
    return value


def _check(value: Any, schema: dict[str, Any], sensitive: bool) -> str:
    """The first way ``value`` breaks its definition, or ""; sensitive values are never quoted."""
    if not schema:
        return ""
    error = next(iter(Draft7Validator(schema).iter_errors(value)), None)
    if error is None:
        return ""
    if sensitive:
        return f"does not satisfy its definition ({error.validator})"
    return str(error.message)[:300]


def render(value: Any) -> str:
    """How a value is handed to the container: strings raw, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
