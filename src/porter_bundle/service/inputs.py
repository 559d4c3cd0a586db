"""A run's parameters and credentials: gathered from every source, typed, checked.

Parameter precedence, low to high (Porter's): the bundle's defaults, parameter
sources (CNAB 810 ``io.cnab.parameter-sources``: the latest value of an output of the
same installation, e.g. Porter's ``porter-state``, or of a dependency), parameter sets in order (the
installation's, then the request's), the installation's own parameters, the request's
overrides. Values that come from sets are text and are
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
from porter_bundle.errors import SUMMARY_VIOLATIONS, FailedPrecondition, Violations
from porter_bundle.service.sources import SourceResolver

# Looks a set up by (kind title, name) in the installation's namespace then the global one.
SetLookup = Callable[[str], Sequence[NamedValueSource] | None]


@dataclass(frozen=True)
class ResolvedInputs:
    """What a run gets: typed parameters and credential values, for one action."""

    parameters: dict[str, Any]
    sensitive: frozenset[str]
    credentials: dict[str, str]
    sourced: frozenset[str] = frozenset()
    """Parameters whose value came from a parameter source (an output): state, not desire."""


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
    outputs: Mapping[str, SourceOutput] | None = None,
    dependency_outputs: Mapping[str, Mapping[str, SourceOutput]] | None = None,
    deferred: frozenset[str] = frozenset(),
    namespace: str = "",
) -> ResolvedInputs:
    """Resolves and checks every input of ``action`` and reports every problem at once:
    INVALID_ARGUMENT (INVALID_INPUTS) listing all violations, sources that did not resolve and
    sets that do not exist among them; FAILED_PRECONDITION when those are the only problems.
    Secret sources are looked up in ``namespace``, the installation's.
    ``outputs``: the installation's latest output values, ``dependency_outputs`` those of its
    dependencies by alias, for parameter sources. A required parameter in ``deferred`` may
    stay without a value (its dependency has not run yet: a check before it runs)."""
    v = Violations()
    unmet: list[tuple[str, FailedPrecondition]] = []
    sourced = _sourced(bundle, outputs or {}, dependency_outputs or {})
    params = _parameters(
        bundle,
        action,
        parameter_sets,
        installation_parameters,
        overrides,
        find_parameter_set,
        resolver,
        v,
        unmet,
        sourced,
        deferred,
        namespace,
    )
    creds = _credentials(
        bundle, action, credential_sets, find_credential_set, resolver, v, unmet, namespace
    )
    _raise_problems(v, unmet)
    defs = {p.name: p for p in cnab.parameters(bundle)}
    # A value sourced from a sensitive output stays sensitive, whatever its parameter says.
    sensitive = frozenset(
        name
        for name in params
        if defs[name].sensitive or (name in sourced and sourced[name].sensitive)
    )
    origins = _origins(
        params, sourced, overrides, installation_parameters, parameter_sets, find_parameter_set
    )
    return ResolvedInputs(params, sensitive, creds, origins)


def _origins(
    params: Mapping[str, Any],
    sourced: Mapping[str, SourceOutput],
    overrides: Mapping[str, Any],
    installation_parameters: Mapping[str, Any],
    set_names: Sequence[str],
    find: SetLookup,
) -> frozenset[str]:
    """The parameters whose value is their parameter source's (nothing set them otherwise)."""
    if not sourced:
        return frozenset()
    # Missing sets were reported by _parameters already.
    from_sets = _entries("parameter set", "parameter_sets", set_names, find, [])
    return frozenset(
        name
        for name in sourced
        if name in params
        and name not in overrides
        and name not in installation_parameters
        and name not in from_sets
    )


@dataclass(frozen=True)
class SourceOutput:
    """The latest value of an installation's output (any JSON value), for parameter sources."""

    value: Any
    sensitive: bool = False


def _sourced(
    bundle: dict[str, Any],
    outputs: Mapping[str, SourceOutput],
    dependency_outputs: Mapping[str, Mapping[str, SourceOutput]],
) -> dict[str, SourceOutput]:
    """Parameter name -> the value of its first source (in priority order) that has one."""
    found: dict[str, SourceOutput] = {}
    for parameter, sources in cnab.parameter_sources(bundle).items():
        for source in sources:
            pool = dependency_outputs.get(source.dependency, {}) if source.dependency else outputs
            if source.output in pool:
                found[parameter] = pool[source.output]
                break
    return found


Unmet = list[tuple[str, FailedPrecondition]]
"""Problems that are no fault of the request's fields (a source that does not resolve, a set
that does not exist), each with the field it concerns."""


def _raise_problems(v: Violations, unmet: Unmet) -> None:
    """Raises every problem found, in one error (see :func:`resolve_inputs`)."""
    if v:
        for field, exc in unmet:
            v.add(field, exc.message)
        v.raise_if_any(reason="INVALID_INPUTS")
    if len(unmet) == 1:
        raise unmet[0][1]
    if unmet:
        first = unmet[0][1]
        shown = "; ".join(exc.message for _, exc in unmet[:SUMMARY_VIOLATIONS])
        more = len(unmet) - SUMMARY_VIOLATIONS
        raise FailedPrecondition(
            shown + (f"; and {more} more" if more > 0 else ""),
            reason=first.reason,
            metadata={"problems": str(len(unmet)), **first.metadata},
        )


def _resolve(
    resolver: SourceResolver, what: str, field: str, source: Any, unmet: Unmet, namespace: str
) -> tuple[bool, Any]:
    """(True, the value of ``source`` for an installation in ``namespace``), or (False, None)
    with the problem added to ``unmet``."""
    try:
        return True, resolver.resolve(what, source, namespace)
    except FailedPrecondition as exc:
        unmet.append((field, exc))
        return False, None


def _entries(
    kind: str, field: str, names: Sequence[str], find: SetLookup, unmet: Unmet
) -> dict[str, NamedValueSource]:
    """Entries of the named sets, later sets winning; a missing set is added to ``unmet``."""
    merged: dict[str, NamedValueSource] = {}
    for i, set_name in enumerate(names):
        entries = find(set_name)
        if entries is None:
            exc = FailedPrecondition(
                f"{kind} {set_name!r} does not exist in the installation's namespace or the global one",
                reason=f"{kind.upper().replace(' ', '_')}_NOT_FOUND",
                metadata={"name": set_name},
            )
            unmet.append((f"{field}[{i}]", exc))
            continue
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
    unmet: Unmet,
    sourced: Mapping[str, SourceOutput],
    deferred: frozenset[str] = frozenset(),
    namespace: str = "",
) -> dict[str, Any]:
    defs = {p.name: p for p in cnab.parameters(bundle)}
    for origin, given in (
        ("installation.parameters", installation_parameters),
        ("parameters", overrides),
    ):
        for name in given:
            if name not in defs:
                v.add(f"{origin}.{name}", f"the bundle has no parameter {name!r}")
    sets_missing = len(unmet)
    from_sets = _entries("parameter set", "parameter_sets", set_names, find, unmet)
    # A set that does not exist explains a value that is missing: it is not reported twice.
    all_sets = len(unmet) == sets_missing
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
            entry, origin = from_sets[name], f"parameter_sets.{name}"
            ok, value = _resolve(
                resolver, f"parameter {name!r}", origin, entry.source, unmet, namespace
            )
            if not ok:
                continue
            typed = not isinstance(value, str)
        elif name in sourced:
            value = sourced[name].value
            origin, typed = f"parameter_sources.{name}", not isinstance(value, str)
        elif "default" in d.schema:
            value, origin, typed = d.schema["default"], f"parameters.{name}", True
        else:
            if d.required and all_sets and name not in deferred:
                v.add(f"parameters.{name}", f"required parameter {name!r} has no value")
            continue
        converted = _convert(value, d.type, typed)
        if converted is _INVALID:
            v.add(origin, f"must be of type {d.type}")
            continue
        secret = d.sensitive or (origin == f"parameter_sources.{name}" and sourced[name].sensitive)
        problem = _check(converted, d.schema, secret)
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
    unmet: Unmet,
    namespace: str,
) -> dict[str, str]:
    sets_missing = len(unmet)
    from_sets = _entries("credential set", "credential_sets", set_names, find, unmet)
    all_sets = len(unmet) == sets_missing
    values: dict[str, str] = {}
    for d in cnab.credentials(bundle):
        if not d.applies_to(action):
            continue
        entry = from_sets.get(d.name)
        if entry is None:
            if d.required and all_sets:
                v.add(
                    f"credentials.{d.name}",
                    f"required credential {d.name!r} is in none of the credential sets",
                )
            continue
        field = f"credentials.{d.name}"
        ok, value = _resolve(
            resolver, f"credential {d.name!r}", field, entry.source, unmet, namespace
        )
        if ok:
            values[d.name] = value if isinstance(value, str) else json.dumps(value)
    return values


_INVALID = object()


def _convert(value: Any, type_: str, typed: bool) -> Any:
    """Text from a source becomes the definition's type; typed numbers lose a needless ``.0``."""
    if not typed and type_ and type_ != "string":
        try:
            value = json.loads(value, parse_constant=_no_constant)  # NaN: no JSON number
        except ValueError:
            return _INVALID
    if type_ == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if type_ == "string" and not isinstance(value, str):
        return _INVALID
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check(value: Any, schema: dict[str, Any], sensitive: bool) -> str:
    """The first way ``value`` breaks its definition, or ""; sensitive values are never quoted."""
    if not schema:
        return ""
    try:
        error = next(iter(Draft7Validator(schema).iter_errors(value)), None)
    except Exception:  # a bundle registered before its definitions were checked
        problem = cnab.schema_problem(schema) or "it cannot be applied"
        return f"the bundle's definition is not a usable JSON Schema: {problem}"
    if error is None:
        return ""
    if sensitive:
        return f"does not satisfy its definition ({error.validator})"
    return str(error.message)[:300]


def render(value: Any) -> str:
    """How a value is handed to the container: strings raw, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
