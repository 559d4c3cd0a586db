"""Checking a Porter document: its type, its schemaVersion and Porter's JSON schema.

Order, as Porter's ``Validate`` methods go (type first here, so a document of the wrong
type is named as such rather than as an unsupported version): the type of document
(``schemaType``, an operator resource's ``kind``, or what the fields show), then
``schemaVersion`` under the server's schema-check strategy, then the JSON schema and the
rules the schema cannot say (one source kind per entry, string-only values before
ParameterSet 1.1.0; a name listed again keeps its last entry, with a warning, as Porter
resolves sets in order). Every problem is a field violation with the JSON path of the
field in the document; messages never quote values, which may be secrets.

About 470 lines on purpose: one pass in Porter's order whose steps share the path and
message helpers; split, each part would import the others' privates.
"""

from __future__ import annotations

import copy
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NoReturn

from jsonschema import Draft7Validator, ValidationError

from porter_bundle.documents.parse import DOCUMENT_FIELD, REASON, type_name
from porter_bundle.errors import FieldViolation, InvalidArgument, Violations

MAX_VIOLATIONS = 50
SOURCE_KINDS = ("value", "env", "path", "command", "secret")
REDACTED = "redacted"
"""Source key of a credential's withheld literal value in exported documents (see mapping)."""
OPERATOR_API_GROUP = "getporter.org/"


class DocumentKind(enum.Enum):
    """The Porter document types, named by their ``schemaType``."""

    INSTALLATION = "Installation"
    CREDENTIAL_SET = "CredentialSet"
    PARAMETER_SET = "ParameterSet"

    @property
    def title(self) -> str:
        """How messages name the kind, e.g. "credential set"."""
        return {"Installation": "installation", "CredentialSet": "credential set"}.get(
            self.value, "parameter set"
        )


SUPPORTED_VERSIONS: dict[DocumentKind, tuple[str, ...]] = {
    DocumentKind.INSTALLATION: ("1.0.2",),
    DocumentKind.CREDENTIAL_SET: ("1.0.1",),
    DocumentKind.PARAMETER_SET: ("1.0.1", "1.1.0"),
}
"""Porter's supported schema versions (pkg/storage/schema.go)."""
DEFAULT_VERSIONS: dict[DocumentKind, str] = {
    DocumentKind.INSTALLATION: "1.0.2",
    DocumentKind.CREDENTIAL_SET: "1.0.1",
    DocumentKind.PARAMETER_SET: "1.1.0",
}
TYPED_VALUES_SINCE = (1, 1, 0)
"""ParameterSet schema versions from 1.1.0 take values of any JSON type; earlier ones strings."""


class SchemaCheck(enum.Enum):
    """How strictly a document's ``schemaVersion`` must match (Porter's ``schema-check``)."""

    EXACT = "exact"
    """One of the supported versions."""
    MINOR = "minor"
    """The MAJOR.MINOR of a supported version (others pass with a warning)."""
    MAJOR = "major"
    """The MAJOR of a supported version (others pass with a warning)."""
    NONE = "none"
    """Anything, even none (with a warning when not supported)."""

    @classmethod
    def parse(cls, text: str) -> SchemaCheck:
        """The strategy named ``text`` (any case); ValueError names the allowed ones."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown schema check {text!r}; one of {allowed}") from None


@dataclass(frozen=True)
class Validated:
    """A document that passed every check, ready to map to its resource."""

    kind: DocumentKind
    body: dict[str, Any]
    """The Porter document (an operator resource's ``spec``)."""
    prefix: str
    """Path of the Porter document in what was sent: "" or "spec"."""
    schema_version: str
    """The version to store: the document's, as MAJOR.MINOR.PATCH (or the default)."""
    warnings: tuple[str, ...] = ()


def join(prefix: str, part: str | int) -> str:
    """A JSON path one step further: ``a.b``, ``a[0]``."""
    if isinstance(part, int):
        return f"{prefix}[{part}]"
    return f"{prefix}.{part}" if prefix else part


# --- the type of document ------------------------------------------------------------


def unwrap(value: Any) -> tuple[dict[str, Any], str, DocumentKind | None, str]:
    """(Porter document, its path prefix, the kind an operator resource names, a problem).

    A Porter operator resource (``apiVersion: getporter.org/v1``, ``kind``, ``spec``) carries
    its Porter document in ``spec``; any other Kubernetes resource is not a Porter document.
    """
    if not isinstance(value, dict):
        return {}, "", None, f"a Porter document is a mapping of fields, not a {type_name(value)}"
    if "schemaType" not in value and "apiVersion" in value and "kind" in value:
        api, kind = value.get("apiVersion"), value.get("kind")
        named = next((k for k in DocumentKind if k.value == kind), None)
        if not (isinstance(api, str) and api.startswith(OPERATOR_API_GROUP)) or named is None:
            return {}, "", None, f"a Kubernetes {kind} ({api}) is not a Porter document"
        spec = value.get("spec")
        if not isinstance(spec, dict):
            return {}, "spec", named, f"the {kind} resource has no spec mapping"
        return spec, "spec", named, ""
    return value, "", None, ""


def detect_kind(value: Any) -> DocumentKind | None:
    """What a document is: its ``schemaType``, an operator resource's ``kind``, else its fields."""
    body, _, named, problem = unwrap(value)
    if problem:
        return None
    if named is not None:
        return named
    return _kind_of(body)


def _kind_of(body: Mapping[str, Any]) -> DocumentKind | None:
    declared = body.get("schemaType")
    if isinstance(declared, str):
        return next((k for k in DocumentKind if k.value.lower() == declared.lower()), None)
    if "bundle" in body or isinstance(body.get("parameters"), dict):
        return DocumentKind.INSTALLATION
    if "credentials" in body:
        return DocumentKind.CREDENTIAL_SET
    if isinstance(body.get("parameters"), list):
        return DocumentKind.PARAMETER_SET
    return None


def _check_kind(
    body: dict[str, Any], prefix: str, named: DocumentKind | None, want: DocumentKind
) -> None:
    declared = body.get("schemaType")
    if named is not None and named is not want:
        _raise(
            "kind",
            f"the resource is {_a(named.value)}, expected {want.value}",
            "WRONG_DOCUMENT_TYPE",
        )
    if isinstance(declared, str):
        # Porter compares schemaType case-insensitively (strings.EqualFold).
        if declared.lower() != want.value.lower():
            _raise(
                join(prefix, "schemaType"),
                f"invalid schemaType {declared}, expected {want.value}",
                "WRONG_DOCUMENT_TYPE",
            )
        return
    if declared is None and named is None:
        seen = _kind_of(body)
        if seen is not None and seen is not want:
            _raise(
                prefix or DOCUMENT_FIELD,
                f"this is {_a(seen.value)} document (by its fields), expected {want.value}",
                "WRONG_DOCUMENT_TYPE",
            )


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'AEIOU' else 'a'} {word}"


def _raise(field: str, description: str, reason: str = REASON) -> NoReturn:
    raise InvalidArgument.from_violations([FieldViolation(field, description)], reason=reason)


# --- schemaVersion -----------------------------------------------------------------------

_SEMVER = re.compile(
    r"v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


def semver(text: str) -> tuple[tuple[int, int, int], bool] | None:
    """(MAJOR, MINOR, PATCH) and whether it is a prerelease, as Porter's semver library reads it."""
    m = _SEMVER.fullmatch(text)
    if m is None:
        return None
    return (int(m[1]), int(m[2] or 0), int(m[3] or 0)), m[4] is not None


def check_schema_version(
    kind: DocumentKind, found: str | None, strategy: SchemaCheck, field: str = "schemaVersion"
) -> tuple[str, str]:
    """(the version to store, a warning or "") for ``found``; raises INVALID_ARGUMENT when refused.

    Follows Porter's ``schema.ValidateSchemaVersion``: ``exact`` needs a supported version;
    ``minor``/``major`` need a supported version's MAJOR.MINOR/MAJOR (Porter compares with its
    default version only, so ParameterSet 1.0.1 fails ``minor`` there; here every supported
    version counts) and warn when not exactly supported; ``none`` only warns.
    """
    supported = SUPPORTED_VERSIONS[kind]
    shown = found if found else "(none)"
    names = " or ".join(supported)
    base = (
        f"the schema version is {shown} but the supported {kind.value} schema version is "
        f"{names} (schema check {strategy.value!r})"
    )
    parsed = semver(found) if found else None
    if parsed is None:
        supported_text = f"the supported {kind.value} schema version is {names} (schema check {strategy.value!r})"
        problem = (
            f"{found} is not a valid semantic version; {supported_text}"
            if found
            else f"schemaVersion is missing (none); {supported_text}"
        )
        if strategy is SchemaCheck.NONE:
            return DEFAULT_VERSIONS[kind], f"{problem}; stored as {DEFAULT_VERSIONS[kind]}"
        _raise(field, problem, "UNSUPPORTED_SCHEMA_VERSION")
    (major, minor, patch), prerelease = parsed
    stored = f"{major}.{minor}.{patch}"
    versions = [semver(v) for v in supported]
    exact = not prerelease and any(
        v is not None and v[0] == (major, minor, patch) for v in versions
    )
    if exact:
        return stored, ""
    if strategy is SchemaCheck.EXACT:
        _raise(field, base, "UNSUPPORTED_SCHEMA_VERSION")
    if strategy is SchemaCheck.MINOR and not any(
        v is not None and v[0][:2] == (major, minor) for v in versions
    ):
        _raise(
            field,
            f"the schema version MAJOR.MINOR values do not match: {base}",
            "UNSUPPORTED_SCHEMA_VERSION",
        )
    if strategy is SchemaCheck.MAJOR and not any(
        v is not None and v[0][0] == major for v in versions
    ):
        _raise(
            field,
            f"the schema version MAJOR values do not match: {base}",
            "UNSUPPORTED_SCHEMA_VERSION",
        )
    return stored, f"WARNING: {base}"


# --- the JSON schema ------------------------------------------------------------------------

_SCHEMA_FILES = {
    DocumentKind.INSTALLATION: "installation.schema.json",
    DocumentKind.CREDENTIAL_SET: "credential-set.schema.json",
    DocumentKind.PARAMETER_SET: "parameter-set.schema.json",
}


def _patch(kind: DocumentKind, schema: dict[str, Any]) -> dict[str, Any]:
    """Where Porter's schema files disagree with the documents Porter reads (schema/README.md)."""
    schema = copy.deepcopy(schema)
    schema["required"] = [r for r in schema["required"] if r != "schemaVersion"]
    props = schema["properties"]
    props["status"] = {"description": "Server-owned status; ignored.", "type": "object"}
    if kind is DocumentKind.INSTALLATION:
        # Read-only fields of `porter installations show -o json`: accepted and ignored.
        props["id"] = {"description": "Porter's ID of the installation; ignored.", "type": "string"}
        props["_calculated"] = {
            "description": "What Porter calculated for display; ignored.",
            "type": "object",
        }
        props["uninstalled"] = {
            "description": "Whether the installation should be uninstalled.",
            "type": "boolean",
        }
        props["parameters"]["additionalProperties"] = {}
        props["bundle"]["anyOf"] = props["bundle"].pop("oneOf")
        props["bundle"]["additionalProperties"] = False
    return schema


@cache
def _validator(kind: DocumentKind) -> Draft7Validator:
    text = (
        resources.files("porter_bundle.documents")
        .joinpath("schema", _SCHEMA_FILES[kind])
        .read_text()
    )
    return Draft7Validator(_patch(kind, json.loads(text)))


_TYPE_NAMES = {
    "object": "mapping",
    "array": "list",
    "string": "string",
    "boolean": "boolean",
    "number": "number",
}


def _schema_violations(
    kind: DocumentKind, body: dict[str, Any], prefix: str, v: Violations
) -> None:
    errors = sorted(
        _validator(kind).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]
    )
    for e in errors:
        path = prefix
        for part in e.absolute_path:
            path = join(path, part)
        for field, description in _describe(kind, e, path):
            v.add(field or DOCUMENT_FIELD, description)


def _describe(kind: DocumentKind, e: ValidationError, path: str) -> list[tuple[str, str]]:
    schema: dict[str, Any] = e.schema if isinstance(e.schema, dict) else {}
    expected: Any = e.validator_value
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        known = list(schema.get("properties", {}))
        return [
            (join(path, key), f"unknown field; {_what(kind, path)} has: {', '.join(known)}")
            for key in e.instance
            if key not in known
        ]
    if e.validator == "required" and isinstance(e.instance, dict):
        return [(join(path, key), "is required") for key in expected if key not in e.instance]
    if e.validator == "type":
        wanted = expected if isinstance(expected, list) else [expected]
        names = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in wanted)
        return [(path, f"must be a {names}, not a {type_name(e.instance)}")]
    if e.validator == "anyOf" and path.endswith("bundle"):
        return [(path, "one of digest, version or tag is required")]
    return [(path, f"does not satisfy Porter's {kind.value} schema ({e.validator})")]


def _what(kind: DocumentKind, path: str) -> str:
    last = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1]) if path else ""
    if not path or path == "spec":
        return f"{_a(kind.value)} document"
    return f"{last!r}"


# --- rules the schema cannot say -----------------------------------------------------------


def _entries_key(kind: DocumentKind) -> str:
    return "credentials" if kind is DocumentKind.CREDENTIAL_SET else "parameters"


def _set_rules(
    kind: DocumentKind, body: dict[str, Any], prefix: str, version: str, v: Violations
) -> dict[str, list[int]]:
    """Adds the violations; returns the positions of each name listed more than once."""
    if "custom" in body:
        v.add(join(prefix, "custom"), f"custom is not kept for {kind.title}s; remove it")
    key = _entries_key(kind)
    entries = body.get(key)
    if not isinstance(entries, list):
        return {}
    typed = semver(version) is not None and semver(version)[0] >= TYPED_VALUES_SINCE  # type: ignore[index]
    allowed = SOURCE_KINDS + ((REDACTED,) if kind is DocumentKind.CREDENTIAL_SET else ())
    seen: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        path = join(join(prefix, key), i)
        name = entry.get("name")
        if isinstance(name, str):
            seen.setdefault(name, []).append(i)
        source = entry.get("source")
        if not isinstance(source, dict):
            continue
        src_path = join(path, "source")
        for extra in (k for k in source if k not in allowed):
            v.add(
                join(src_path, extra),
                f"unknown source {extra!r}; a source is one of {', '.join(SOURCE_KINDS)}",
            )
        kinds = [k for k in source if k in SOURCE_KINDS]
        if REDACTED in source and kind is DocumentKind.CREDENTIAL_SET:
            if source[REDACTED] is not True:
                v.add(join(src_path, REDACTED), "must be true (it marks a withheld literal value)")
            if kinds:
                v.add(src_path, "redacted keeps the stored value and takes no other source")
            continue
        if not kinds:
            v.add(src_path, f"needs exactly one of {', '.join(SOURCE_KINDS)}; it has none")
        elif len(kinds) > 1:
            v.add(
                src_path,
                f"needs exactly one of {', '.join(SOURCE_KINDS)}; it has {', '.join(kinds)}",
            )
        if (
            kind is DocumentKind.PARAMETER_SET
            and not typed
            and "value" in source
            and not isinstance(source["value"], str)
            and source["value"] is not None
        ):
            v.add(
                join(src_path, "value"),
                f"schemaVersion {version} takes string values only; "
                f"ParameterSet 1.1.0 takes a {type_name(source['value'])}",
            )
    return {name: at for name, at in seen.items() if len(at) > 1}


# --- all together ---------------------------------------------------------------------------


def validate(value: Any, want: DocumentKind, strategy: SchemaCheck) -> Validated:
    """Checks a parsed document as a ``want`` document; INVALID_ARGUMENT lists the problems."""
    body, prefix, named, problem = unwrap(value)
    if problem:
        _raise(prefix or DOCUMENT_FIELD, problem, "WRONG_DOCUMENT_TYPE")
    _check_kind(body, prefix, named, want)
    found = body.get("schemaVersion")
    if found is not None and not isinstance(found, str):
        _raise(
            join(prefix, "schemaVersion"),
            f"must be a string such as {DEFAULT_VERSIONS[want]}, not a {type_name(found)}",
        )
    stored, warning = check_schema_version(want, found, strategy, join(prefix, "schemaVersion"))
    v = Violations()
    _schema_violations(want, body, prefix, v)
    repeated: dict[str, list[int]] = {}
    if want is not DocumentKind.INSTALLATION:
        repeated = _set_rules(want, body, prefix, stored, v)
    if v.items:
        raise InvalidArgument.from_violations(v.items[:MAX_VIOLATIONS], reason=REASON)
    warnings = [warning] if warning else []
    if repeated:
        body, said = _last_entries_win(want, body, prefix, repeated)
        warnings.extend(said)
    return Validated(want, body, prefix, stored, tuple(warnings))


def _last_entries_win(
    kind: DocumentKind, body: dict[str, Any], prefix: str, repeated: Mapping[str, list[int]]
) -> tuple[dict[str, Any], list[str]]:
    """The set without the earlier entries of each name listed more than once, and a warning
    for each: Porter resolves a set's entries in order, so its last entry of a name wins."""
    key = _entries_key(kind)
    path = join(prefix, key)
    dropped = {i for at in repeated.values() for i in at[:-1]}
    out = dict(body)
    out[key] = [e for i, e in enumerate(body[key]) if i not in dropped]
    said = [
        f"{join(path, at[-1])}: {name!r} is also listed at "
        f"{', '.join(join(path, i) for i in at[:-1])}; the last entry wins, as in Porter"
        for name, at in sorted(repeated.items(), key=lambda item: item[1][-1])
    ]
    return out, said
