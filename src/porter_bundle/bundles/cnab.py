"""bundle.json: parse, validate against the CNAB bundle schema, and read what the service needs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from porter_bundle.errors import FieldViolation, InvalidArgument
from porter_bundle.validation import MAX_BUNDLE_JSON_BYTES

_MAX_VIOLATIONS = 50


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
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument.from_violations(
            [FieldViolation(field, f"not valid JSON: {exc}")], reason="INVALID_BUNDLE"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidArgument.from_violations(
            [FieldViolation(field, "bundle.json must be a JSON object")], reason="INVALID_BUNDLE"
        )
    errors = sorted(_validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        violations = [
            FieldViolation(_json_path(field, list(e.absolute_path)), e.message[:500])
            for e in errors[:_MAX_VIOLATIONS]
        ]
        raise InvalidArgument.from_violations(violations, reason="INVALID_BUNDLE")
    return BundleDocument(raw, digest_of(raw), doc)


def _json_path(root: str, parts: list[Any]) -> str:
    out = root
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out
