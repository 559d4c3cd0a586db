"""Numbers and booleans where Porter's Go types want a string, read as Porter reads them.

Porter reads documents into Go structs. Where a field is a string, its YAML reader
(gopkg.in/yaml.v3) takes a number or boolean as the text it was written as:
``labels: {thing: 1}`` is the label "1", ``version: 1.10`` the version "1.10". Its JSON
reader refuses them, so only YAML documents get this. A ``source`` is read into a map first
and each value formatted with Go's ``%v`` (pkg/secrets ``Source.UnmarshalRaw``), for YAML
and JSON alike: ``value: 11`` is "11", ``value: 1.50`` is "1.5". That holds for every
credential source and every parameter source except a ParameterSet 1.1.0 ``value``, which
keeps its JSON type (this server resolves it against the parameter's type). For the other
source kinds (``env: 8080``) Porter's code formats its still empty hint, so the source names
nothing; here they are their ``%v`` text too.

Only scalars change: a mapping or list where a string belongs is still refused by the
checks (:mod:`.validate`), with the document's own path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from porter_bundle.documents.parse import ParsedDocument, Path, parse_single
from porter_bundle.documents.validate import (
    SOURCE_KINDS,
    TYPED_VALUES_SINCE,
    DocumentKind,
    detect_kind,
    semver,
    unwrap,
)

_HEAD_FIELDS = ("schemaType", "schemaVersion", "name", "namespace")
_BUNDLE_FIELDS = ("repository", "digest", "version", "tag")
_HINTS = tuple(k for k in SOURCE_KINDS if k != "value")


def read_one(raw: bytes) -> Any:
    """The single document of a request, its scalars read as Porter reads them."""
    return porter_value(parse_single(raw))


def porter_value(doc: ParsedDocument) -> Any:
    """The document's value with numbers and booleans as text where Porter wants a string."""
    body, prefix, _, problem = unwrap(doc.value)
    kind = None if problem else detect_kind(doc.value)
    if kind is None:
        return doc.value
    root: Path = (prefix,) if prefix else ()
    texts = {path[len(root) :]: t for path, t in doc.texts.items() if path[: len(root)] == root}
    body = copy.deepcopy(body)
    for key in _HEAD_FIELDS:
        _written(body, key, texts.get((key,)))
    labels = body.get("labels")
    if isinstance(labels, dict):
        for key in labels:
            _written(labels, key, texts.get(("labels", key)))
    if kind is DocumentKind.INSTALLATION:
        _installation(body, texts)
    else:
        _set(kind, body, texts)
    if not prefix:
        return body
    wrapped = dict(doc.value)
    wrapped[prefix] = body
    return wrapped


def _installation(body: dict[str, Any], texts: Mapping[Path, str]) -> None:
    bundle = body.get("bundle")
    if isinstance(bundle, dict):
        for key in _BUNDLE_FIELDS:
            _written(bundle, key, texts.get(("bundle", key)))
    for key in ("credentialSets", "parameterSets"):
        names = body.get(key)
        if isinstance(names, list):
            for i in range(len(names)):
                _written(names, i, texts.get((key, i)))


def _set(kind: DocumentKind, body: dict[str, Any], texts: Mapping[Path, str]) -> None:
    key = "credentials" if kind is DocumentKind.CREDENTIAL_SET else "parameters"
    version = body.get("schemaVersion")
    parsed = semver(version) if isinstance(version, str) else None
    typed = kind is DocumentKind.PARAMETER_SET and (
        parsed is None or parsed[0] >= TYPED_VALUES_SINCE  # absent: stored as 1.1.0
    )
    entries = body.get(key)
    if not isinstance(entries, list):
        return
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        _written(entry, "name", texts.get((key, i, "name")))
        source = entry.get("source")
        if not isinstance(source, dict):
            continue
        for hint in (*_HINTS, *(() if typed else ("value",))):
            if hint in source:
                source[hint] = go_text(source[hint])


def _written(container: Any, key: str | int, text: str | None) -> None:
    """The YAML text of a number or boolean instead of its value (Go yaml.v3 into a string)."""
    value = container[key] if isinstance(key, int) else container.get(key)
    if text is not None and isinstance(value, int | float):
        container[key] = text


def go_text(value: Any) -> Any:
    """A number or boolean as Go's ``fmt.Sprintf("%v", v)`` writes it; anything else as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    return value


def _go_float(f: float) -> str:
    """``%v`` of a float64 (strconv ``'g'``, shortest): the shortest digits that read back
    as ``f``, in exponent form when the exponent is below -4 or at least 6 (``1e+06``)."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(f)).as_tuple()
    assert isinstance(exponent, int)
    written = "".join(map(str, digit_tuple)).lstrip("0")
    digits = written.rstrip("0")
    exponent += len(written) - len(digits)
    point = len(digits) + exponent  # f = 0.<digits> * 10**point
    neg = "-" if sign else ""
    if not -4 <= point - 1 < 6:
        e = point - 1
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return neg + digits + "0" * (point - len(digits))
    return f"{neg}{digits[:point]}.{digits[point:]}"
