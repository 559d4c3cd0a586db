"""bundle.json: parse, validate against the CNAB bundle schema, and read what the service needs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator, SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT7

from porter_bundle.errors import FieldViolation, InvalidArgument
from porter_bundle.validation import MAX_BUNDLE_JSON_BYTES, unsafe_data

_MAX_VIOLATIONS = 50
# Real bundle.json files nest about ten levels; far deeper documents exhaust the validator.
_MAX_DEPTH = 64


@dataclass(frozen=True)
class BundleDocument:
    """A validated bundle.json: the exact bytes, their digest and the parsed document."""

    raw: bytes
    digest: str
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        """bundle.json ``name``."""
        return str(self.doc.get("name", ""))

    @property
    def version(self) -> str:
        """bundle.json ``version``."""
        return str(self.doc.get("version", ""))

    @property
    def description(self) -> str:
        """bundle.json ``description``."""
        return str(self.doc.get("description", ""))


@cache
def _validator() -> Draft7Validator:
    def load(name: str) -> dict[str, Any]:
        text = resources.files("porter_bundle.bundles").joinpath("schema", name).read_text()
        loaded: dict[str, Any] = json.loads(text)
        return loaded

    bundle, definitions = load("bundle.schema.json"), load("definitions.schema.json")
    # An output's "path" is required by the schema but optional in cnab-go and Porter, which
    # older Porter bundles rely on; it defaults to /cnab/app/outputs/<name> (see outputs()).
    output = bundle["definitions"]["output"]
    output["required"] = [r for r in output["required"] if r != "path"]
    registry: Registry[Any] = Registry().with_resources(
        [
            (bundle["$id"], DRAFT7.create_resource(bundle)),
            (definitions["$id"], DRAFT7.create_resource(definitions)),
            # bundle.schema.json refers to the draft-07 meta-schema for custom extensions.
            (
                "http://json-schema.org/draft-07/schema",
                DRAFT7.create_resource(Draft7Validator.META_SCHEMA),
            ),
        ]
    )
    return Draft7Validator(bundle, registry=registry)


def digest_of(raw: bytes) -> str:
    """``sha256:<hex>`` of bytes."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def parse_bundle(raw: bytes, field: str = "bundle_json") -> BundleDocument:
    """Parses and validates a bundle.json; INVALID_ARGUMENT lists every schema violation."""
    if len(raw) > MAX_BUNDLE_JSON_BYTES:
        raise InvalidArgument.from_violations(
            [FieldViolation(field, f"bundle.json is larger than {MAX_BUNDLE_JSON_BYTES} bytes")],
            reason="INVALID_BUNDLE",
        )
    too_deep = InvalidArgument.from_violations(
        [FieldViolation(field, f"bundle.json is nested deeper than {_MAX_DEPTH} levels")],
        reason="INVALID_BUNDLE",
    )
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument.from_violations(
            [FieldViolation(field, f"not valid JSON: {exc}")], reason="INVALID_BUNDLE"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidArgument.from_violations(
            [FieldViolation(field, "bundle.json must be a JSON object")], reason="INVALID_BUNDLE"
        )
    if _depth(doc) > _MAX_DEPTH:
        raise too_deep
    unsafe = unsafe_data(doc)
    if unsafe is not None:
        raise InvalidArgument.from_violations(
            [FieldViolation(field + unsafe[0], unsafe[1])], reason="INVALID_BUNDLE"
        )
    # Go (cnab-go, cnab-to-oci, so Porter) writes empty maps and lists as null: read them as absent.
    doc = {k: v for k, v in doc.items() if v is not None}
    try:
        errors = sorted(
            _validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]
        )
    except RecursionError:
        raise too_deep from None
    if errors:
        violations = [
            FieldViolation(_json_path(field, _error_path(e)), e.message[:500])
            for e in errors[:_MAX_VIOLATIONS]
        ]
        raise InvalidArgument.from_violations(violations, reason="INVALID_BUNDLE")
    bad_definitions = [
        FieldViolation(_json_path(field, ["definitions", name]), problem)
        for name, schema in sorted((doc.get("definitions") or {}).items())
        if (problem := schema_problem(schema))
    ]
    if bad_definitions:
        raise InvalidArgument.from_violations(bad_definitions, reason="INVALID_BUNDLE")
    return BundleDocument(raw, digest_of(raw), doc)


def schema_problem(schema: Any) -> str:
    """Why a bundle definition cannot check values as a run will check them
    (``Draft7Validator(definition)``), or "": not a draft-07 schema (a bad ``type``, a
    ``pattern`` that is no regular expression), or a ``$ref`` that points nowhere (a definition
    is its own root: ``#/...`` refers inside it; remote references are never fetched)."""
    if not isinstance(schema, dict):
        return "a definition must be a JSON Schema object"
    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message[:200]}"
    refs = _refs(schema)
    if refs is None:  # nested $id: references resolve against other bases; a run reports them
        return ""
    resolver = Registry().resolver_with_root(DRAFT7.create_resource(schema))
    for ref in sorted(refs):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return f"$ref {ref[:100]!r} points to nothing in the definition"
    return ""


def _refs(schema: dict[str, Any]) -> set[str] | None:
    """Every ``$ref`` of a schema; None when a subschema sets its own ``$id``."""
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node is not schema and "$id" in node:
                return None
            ref = node.get("$ref")
            if isinstance(ref, str):
                found.add(ref)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _depth(doc: Any) -> int:
    """How deeply containers nest in a parsed JSON document (iteratively: no recursion limit)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def _error_path(error: ValidationError) -> list[Any]:
    """Where a schema violation is: a missing required property is named by its own path."""
    parts = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        for prop in error.validator_value:
            if error.message.startswith(f"{prop!r} "):
                parts.append(prop)
                break
    return parts


def _json_path(root: str, parts: list[Any]) -> str:
    out = root
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


# --- what a run needs from bundle.json ----------------------------------------------

BUILTIN_ACTIONS = ("install", "upgrade", "uninstall")
OUTPUTS_DIR = "/cnab/app/outputs"


@dataclass(frozen=True)
class _Scoped:
    """Something of a bundle that applies to some actions only (``applyTo``)."""

    name: str
    apply_to: tuple[str, ...]

    def applies_to(self, action: str) -> bool:
        """Whether it takes part in ``action`` (every action when applyTo is empty)."""
        return not self.apply_to or action in self.apply_to


@dataclass(frozen=True)
class _Typed(_Scoped):
    """A parameter or output: scoped, with its definition (a JSON schema) merged in."""

    schema: dict[str, Any]

    @property
    def sensitive(self) -> bool:
        """CNAB: a definition with ``writeOnly: true`` is sensitive."""
        return bool(self.schema.get("writeOnly", False))

    @property
    def type(self) -> str:
        """The JSON schema type ("" when the definition names none or several)."""
        t = self.schema.get("type", "")
        return t if isinstance(t, str) else ""


@dataclass(frozen=True)
class ParameterDef(_Typed):
    """A bundle parameter: its definition and where it goes in the container."""

    required: bool
    env: str
    path: str


@dataclass(frozen=True)
class CredentialDef(_Scoped):
    """A bundle credential: where it goes in the container."""

    env: str
    path: str
    required: bool


PORTER_INTERNAL = "porter-internal"
"""The ``$comment`` of the definitions Porter marks internal (pkg/cnab/extensions.go)."""


@dataclass(frozen=True)
class OutputDef(_Typed):
    """A bundle output: its definition and where the container writes it."""

    path: str

    @property
    def internal(self) -> bool:
        """Porter marks it internal (``$comment: porter-internal``, e.g. ``porter-state``)."""
        return self.schema.get("$comment") == PORTER_INTERNAL


def _definition(doc: dict[str, Any], name: Any) -> dict[str, Any]:
    definitions = doc.get("definitions") or {}
    found = definitions.get(name) if isinstance(name, str) else None
    return dict(found) if isinstance(found, dict) else {}


def parameters(doc: dict[str, Any]) -> list[ParameterDef]:
    """The bundle's parameters, sorted by name."""
    out = []
    for name, p in sorted((doc.get("parameters") or {}).items()):
        dest = p.get("destination") or {}
        out.append(
            ParameterDef(
                name=name,
                schema=_definition(doc, p.get("definition")),
                required=bool(p.get("required", False)),
                env=str(dest.get("env", "")),
                path=str(dest.get("path", "")),
                apply_to=tuple(p.get("applyTo") or ()),
            )
        )
    return out


def credentials(doc: dict[str, Any]) -> list[CredentialDef]:
    """The bundle's credentials, sorted by name."""
    return [
        CredentialDef(
            name=name,
            env=str(c.get("env", "")),
            path=str(c.get("path", "")),
            required=bool(c.get("required", False)),
            apply_to=tuple(c.get("applyTo") or ()),
        )
        for name, c in sorted((doc.get("credentials") or {}).items())
    ]


def outputs(doc: dict[str, Any]) -> list[OutputDef]:
    """The bundle's outputs, sorted by name (path defaults to /cnab/app/outputs/<name>)."""
    return [
        OutputDef(
            name=name,
            schema=_definition(doc, o.get("definition")),
            path=str(o.get("path") or f"{OUTPUTS_DIR}/{name}"),
            apply_to=tuple(o.get("applyTo") or ()),
        )
        for name, o in sorted((doc.get("outputs") or {}).items())
    ]


def custom_actions(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Custom actions by name (``actions`` in bundle.json)."""
    actions = doc.get("actions") or {}
    return {k: dict(v) for k, v in actions.items() if isinstance(v, dict)}


PARAMETER_SOURCES = "io.cnab.parameter-sources"
"""The well-known custom extension naming where a parameter's value may come from (CNAB 810)."""


@dataclass(frozen=True)
class ParameterSource:
    """Where a parameter's value may come from: an output of the same installation
    (``dependency`` "": CNAB 810's ``output``) or of one of its dependencies (Porter's
    ``dependencies.output``)."""

    output: str
    dependency: str = ""


def parameter_sources(doc: dict[str, Any]) -> dict[str, list[ParameterSource]]:
    """Parameter name -> its sources in ``priority`` order
    (``custom["io.cnab.parameter-sources"]``); source types this server does not know are
    skipped, and so are parameters left without a source."""
    declared = (doc.get("custom") or {}).get(PARAMETER_SOURCES) or {}
    found: dict[str, list[ParameterSource]] = {}
    if not isinstance(declared, dict):
        return found
    for parameter, spec in declared.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("sources"), dict):
            continue
        sources = spec["sources"]
        priority = spec.get("priority") or list(sources)
        chosen = []
        for kind in priority if isinstance(priority, list) else []:
            source = sources.get(kind)
            if not isinstance(source, dict) or not source.get("name"):
                continue
            if kind == "output":
                chosen.append(ParameterSource(str(source["name"])))
            elif kind == "dependencies.output" and source.get("dependency"):
                chosen.append(ParameterSource(str(source["name"]), str(source["dependency"])))
        if chosen:
            found[str(parameter)] = chosen
    return found
