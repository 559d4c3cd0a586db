"""Porter documents <-> API resources, both ways.

Document fields map to the resource's: camelCase keys to proto fields, ``parameters`` (an
installation's map of values) to a Struct, each ``source`` (one key: value, env, path,
command or secret) to a ValueSource. Server-owned fields (``status``, ``created``,
``modified``) are not mapped. Exporting gives the document that maps back to the same
resource, so applying an exported document changes nothing.

Credential literal values are write-only: the API never returns them, so an exported
credential set writes such an entry as ``source: {redacted: true}``. Applying a document
with that marker keeps the value the server has for that credential (the update path
keeps a stored literal that comes back ``redacted``); where it has none, the entry is
refused as having no source.

An installation's sensitive parameters (its bundle marks them writeOnly) are exported the same
way unless revealed: ``parameters: {password: {redacted: true}}``; applying that keeps the
value the server has (:class:`porter_bundle.service.documents.DocumentService`), so applying
an export changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct, Value

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter_bundle.documents.parse import _Loader
from porter_bundle.documents.validate import REDACTED, SOURCE_KINDS, DocumentKind, Validated

Resource = Installation | CredentialSet | ParameterSet
Format = Literal["yaml", "json"]
_BUNDLE_KEYS = ("repository", "digest", "version", "tag")
WITHHELD: Mapping[str, Any] = {REDACTED: True}
"""An installation parameter's value in an export that withholds it (sensitive, not revealed);
applying the export keeps the value the server has."""


def is_withheld(value: Any) -> bool:
    """Whether a document's parameter value is the :data:`WITHHELD` marker."""
    return isinstance(value, dict) and value == WITHHELD


_EXACT_FLOAT_INTS = 2**53


# --- values ---------------------------------------------------------------------------------


def to_value(value: Any) -> Value:
    """A JSON value as a protobuf Value."""
    out = Value()
    json_format.ParseDict(value, out)
    return out


def plain(value: Value) -> Any:
    """A protobuf Value as a JSON value; integral numbers become ints."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        n = value.number_value
        return int(n) if n.is_integer() and abs(n) <= _EXACT_FLOAT_INTS else n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return plain_struct(value.struct_value)
    if kind == "list_value":
        return [plain(v) for v in value.list_value.values]
    return None


def plain_struct(struct: Struct) -> dict[str, Any]:
    """A Struct as a JSON object."""
    return {key: plain(v) for key, v in struct.fields.items()}


def _struct(values: Mapping[str, Any]) -> Struct:
    out = Struct()
    json_format.ParseDict(dict(values), out)
    return out


# --- document -> resource -------------------------------------------------------------------


def to_source(source: Mapping[str, Any]) -> ValueSource:
    """Porter's ``source`` as a ValueSource (``{redacted: true}``: a withheld literal)."""
    for kind in SOURCE_KINDS:
        if kind in source:
            if kind == "value":
                return ValueSource(value=to_value(source["value"]))
            return ValueSource(**{kind: source[kind]})
    return ValueSource(redacted=bool(source.get(REDACTED)))


def to_installation(doc: Mapping[str, Any], schema_version: str | None = None) -> Installation:
    """An Installation document as the API resource (output-only fields unset)."""
    bundle = doc.get("bundle") or {}
    inst = Installation(
        namespace=doc.get("namespace") or "",
        name=doc.get("name") or "",
        schema_version=doc.get("schemaVersion", "") if schema_version is None else schema_version,
        uninstalled=bool(doc.get("uninstalled", False)),
        labels=dict(doc.get("labels") or {}),
        bundle=BundleReference(**{k: bundle[k] for k in _BUNDLE_KEYS if bundle.get(k)}),
        credential_sets=list(doc.get("credentialSets") or []),
        parameter_sets=list(doc.get("parameterSets") or []),
    )
    if doc.get("parameters"):
        inst.parameters.CopyFrom(_struct(doc["parameters"]))
    if doc.get("custom") is not None:
        inst.custom.CopyFrom(_struct(doc["custom"]))
    return inst


def _entries(doc: Mapping[str, Any], key: str) -> list[NamedValueSource]:
    return [
        NamedValueSource(name=e.get("name", ""), source=to_source(e.get("source") or {}))
        for e in doc.get(key) or []
    ]


def to_credential_set(doc: Mapping[str, Any], schema_version: str | None = None) -> CredentialSet:
    """A CredentialSet document as the API resource."""
    return CredentialSet(
        namespace=doc.get("namespace") or "",
        name=doc.get("name") or "",
        schema_version=doc.get("schemaVersion", "") if schema_version is None else schema_version,
        labels=dict(doc.get("labels") or {}),
        credentials=_entries(doc, "credentials"),
    )


def to_parameter_set(doc: Mapping[str, Any], schema_version: str | None = None) -> ParameterSet:
    """A ParameterSet document as the API resource."""
    return ParameterSet(
        namespace=doc.get("namespace") or "",
        name=doc.get("name") or "",
        schema_version=doc.get("schemaVersion", "") if schema_version is None else schema_version,
        labels=dict(doc.get("labels") or {}),
        parameters=_entries(doc, "parameters"),
    )


def to_resource(validated: Validated) -> Resource:
    """The resource a validated document describes, with the version to store."""
    if validated.kind is DocumentKind.INSTALLATION:
        return to_installation(validated.body, validated.schema_version)
    if validated.kind is DocumentKind.CREDENTIAL_SET:
        return to_credential_set(validated.body, validated.schema_version)
    return to_parameter_set(validated.body, validated.schema_version)


# --- resource -> document -------------------------------------------------------------------


def _head(kind: DocumentKind, msg: Resource) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaType": kind.value,
        "schemaVersion": msg.schema_version,
        "name": msg.name,
        "namespace": msg.namespace,
    }
    if msg.labels:
        doc["labels"] = dict(sorted(msg.labels.items()))
    return doc


def from_installation(inst: Installation) -> dict[str, Any]:
    """The Porter Installation document of an installation (desired state only)."""
    doc = _head(DocumentKind.INSTALLATION, inst)
    doc["bundle"] = {k: getattr(inst.bundle, k) for k in _BUNDLE_KEYS if getattr(inst.bundle, k)}
    if inst.uninstalled:
        doc["uninstalled"] = True
    parameters = plain_struct(inst.parameters)
    for name in inst.sensitive_parameters:  # withheld: "keep the stored value" on apply
        parameters.setdefault(name, dict(WITHHELD))
    if parameters:
        doc["parameters"] = parameters
    if inst.credential_sets:
        doc["credentialSets"] = list(inst.credential_sets)
    if inst.parameter_sets:
        doc["parameterSets"] = list(inst.parameter_sets)
    if inst.HasField("custom"):
        doc["custom"] = plain_struct(inst.custom)
    return doc


def from_source(source: ValueSource) -> dict[str, Any]:
    """A ValueSource as Porter's ``source``; a withheld literal as ``{redacted: true}``."""
    kind = source.WhichOneof("kind")
    if kind is None:
        return {REDACTED: True} if source.redacted else {}
    if kind == "value":
        return {"value": plain(source.value)}
    return {kind: getattr(source, kind)}


def from_credential_set(cs: CredentialSet) -> dict[str, Any]:
    """The Porter CredentialSet document of a set (literal values as ``redacted``)."""
    doc = _head(DocumentKind.CREDENTIAL_SET, cs)
    doc["credentials"] = [{"name": e.name, "source": from_source(e.source)} for e in cs.credentials]
    return doc


def from_parameter_set(ps: ParameterSet) -> dict[str, Any]:
    """The Porter ParameterSet document of a set."""
    doc = _head(DocumentKind.PARAMETER_SET, ps)
    doc["parameters"] = [{"name": e.name, "source": from_source(e.source)} for e in ps.parameters]
    return doc


# --- text -----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Quotes every string that YAML 1.1 readers or this package's YAML 1.2 reader would retype."""


_Dumper.yaml_implicit_resolvers = {}
for _first in {*yaml.SafeDumper.yaml_implicit_resolvers, *_Loader.yaml_implicit_resolvers}:
    _Dumper.yaml_implicit_resolvers[_first] = [
        *yaml.SafeDumper.yaml_implicit_resolvers.get(_first, []),
        *_Loader.yaml_implicit_resolvers.get(_first, []),
    ]


def render(doc: Mapping[str, Any], fmt: Format = "yaml") -> str:
    """A document as YAML (block style, keys in document order) or indented JSON."""
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    text: str = yaml.dump(
        dict(doc), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text
