"""Reading Porter documents: YAML or JSON bytes to plain JSON values, safely.

YAML is read with a safe loader tightened to what Porter's Go YAML reader (YAML 1.2 core
schema) understands: booleans are only ``true``/``false``, numbers only decimal, timestamps
stay strings (``yes``, ``on``, ``0755`` or ``2024-01-01`` are never silently retyped).
Aliases are refused (no "billion laughs"), merge keys (``<<``) are plain keys, duplicate
keys are refused (Porter's reader refuses them too), and so is anything JSON cannot hold
(binary, dates, sets).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from porter_bundle.errors import FieldViolation, InvalidArgument, quote
from porter_bundle.validation import MAX_DOCUMENT_BYTES, has_lone_surrogate

MAX_DEPTH = 32
"""Containers nested deeper than this are refused (Porter documents nest about five levels)."""
REASON = "INVALID_DOCUMENT"
DOCUMENT_FIELD = "document"
"""The field path of problems with the document as a whole (the requests' ``document`` field)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader reading YAML 1.2 core scalars, without aliases or duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, "anchors and aliases are not allowed", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    duplicate = False  # unhashable: the base class reports it
                if duplicate:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                with contextlib.suppress(TypeError):
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {}  # own resolvers only (below), not SafeLoader's YAML 1.1 ones


def _int(loader: yaml.SafeLoader, node: Any) -> int:
    try:
        return int(str(loader.construct_scalar(node)))
    except ValueError:
        raise ConstructorError(None, None, "not a decimal integer", node.start_mark) from None


def _float(loader: yaml.SafeLoader, node: Any) -> float:
    try:
        return float(str(loader.construct_scalar(node)))
    except ValueError:
        raise ConstructorError(None, None, "not a decimal number", node.start_mark) from None


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)
_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("tag:yaml.org,2002:float", _float)


Path = tuple[str | int, ...]
"""Where a value is in a document: keys and list indexes from its root."""
_TEXT_TAGS = frozenset(
    {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}
)


@dataclass(frozen=True)
class ParsedDocument:
    """One document of a stream: its position (1-based) and its JSON value."""

    index: int
    value: Any
    texts: Mapping[Path, str] = field(default_factory=dict)
    """The text as written of each YAML number and boolean, by its path (none for JSON):
    where Porter's Go types want a string, its YAML reader takes that text
    (see :mod:`porter_bundle.documents.scalars`)."""


def _fail(description: str, field: str = DOCUMENT_FIELD) -> InvalidArgument:
    return InvalidArgument.from_violations([FieldViolation(field, description)], reason=REASON)


def parse_stream(raw: bytes, *, max_bytes: int | None = MAX_DOCUMENT_BYTES) -> list[ParsedDocument]:
    """Every non-empty document of a YAML stream (``---`` separated) or of one JSON text.

    INVALID_ARGUMENT (field ``document``) when the bytes are too large, not UTF-8, not YAML or
    JSON, nested too deeply or hold values JSON cannot represent.
    """
    if max_bytes is not None and len(raw) > max_bytes:
        raise _fail(f"the document is larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        return []
    try:
        values = _load(text)
    except RecursionError:
        raise _fail(f"the document is nested deeper than {MAX_DEPTH} levels") from None
    docs = [
        ParsedDocument(i, v, texts) for i, (v, texts) in enumerate(values, start=1) if v is not None
    ]
    for doc in docs:
        _check_json(doc.value, len(docs) > 1, doc.index)
    return docs


def parse_one(raw: bytes) -> Any:
    """The single document of a request (YAML or JSON); INVALID_ARGUMENT for none or several."""
    return parse_single(raw).value


def parse_single(raw: bytes) -> ParsedDocument:
    """:func:`parse_one`, with the written text of the document's YAML scalars."""
    docs = parse_stream(raw)
    if not docs:
        raise _fail("the document is empty")
    if len(docs) > 1:
        raise _fail(
            f"the stream holds {len(docs)} documents; apply one per call "
            "(the porter-bundle apply command splits streams)"
        )
    return docs[0]


def _load(text: str) -> list[tuple[Any, dict[Path, str]]]:
    if text.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(text, object_pairs_hook=_json_object, parse_constant=_no_constant)
            return [(value, {})]
        except json.JSONDecodeError as exc:
            json_error = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        except ValueError as exc:  # duplicate keys, NaN
            raise _fail(f"not valid JSON: {exc}") from None
        try:  # a YAML flow mapping also starts with "{"
            return _load_yaml(text)
        except RecursionError:
            raise
        except Exception:
            raise _fail(json_error) from None
    try:
        return _load_yaml(text)
    except RecursionError:
        raise
    except yaml.MarkedYAMLError as exc:
        raise _fail(f"not valid YAML or JSON: {_yaml_message(exc)}") from None
    except Exception as exc:  # explicit tags with bad values (!!bool maybe) end up here
        raise _fail(f"not valid YAML or JSON: {str(exc)[:300]}") from None


def _load_yaml(text: str) -> list[tuple[Any, dict[Path, str]]]:
    """Each document's value and the written text of its numbers and booleans."""
    loader = _Loader(text)
    try:
        out = []
        while loader.check_node():
            node = loader.get_node()
            out.append((loader.construct_document(node), _scalar_texts(node)))
        return out
    finally:
        loader.dispose()


def _scalar_texts(root: Any) -> dict[Path, str]:
    texts: dict[Path, str] = {}
    stack: list[tuple[Any, Path]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack.extend(
                (v, (*path, k.value))
                for k, v in node.value
                if isinstance(k, yaml.ScalarNode) and len(path) < MAX_DEPTH
            )
        elif isinstance(node, yaml.SequenceNode) and len(path) < MAX_DEPTH:
            stack.extend((v, (*path, i)) for i, v in enumerate(node.value))
        elif isinstance(node, yaml.ScalarNode) and node.tag in _TEXT_TAGS:
            texts[path] = node.value
    return texts


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    what = " ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{what}{where}"[:300]


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_json(value: Any, several: bool, index: int) -> None:
    """Only JSON values, nested at most MAX_DEPTH levels (iteratively: no recursion limit)."""
    root = f"{DOCUMENT_FIELD}[{index}]" if several else ""
    stack: list[tuple[Any, str, int]] = [(value, root, 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            raise _fail(f"the document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise _fail(
                        f"keys must be strings; {quote(repr(key))} is a {_type_name(key)}",
                        path or DOCUMENT_FIELD,
                    )
                if has_lone_surrogate(key):
                    raise _fail(_NOT_UNICODE, path or DOCUMENT_FIELD)
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node))
        elif isinstance(node, str) and has_lone_surrogate(node):
            raise _fail(_NOT_UNICODE, path or DOCUMENT_FIELD)
        elif isinstance(node, float) and not math.isfinite(node):
            raise _fail("numbers must be finite", path or DOCUMENT_FIELD)
        elif node is not None and not isinstance(node, str | int | float | bool):
            raise _fail(
                f"a {_type_name(node)} is not a JSON value (quote it to make it a string)",
                path or DOCUMENT_FIELD,
            )


_NOT_UNICODE = "text must be Unicode (a lone surrogate such as \\ud800 is not)"


def _type_name(value: Any) -> str:
    return {
        "bytes": "binary value",
        "datetime": "timestamp",
        "date": "date",
        "set": "set",
        "tuple": "ordered map",
        "int": "number",
        "float": "number",
        "bool": "boolean",
        "NoneType": "null",
    }.get(type(value).__name__, type(value).__name__)


def type_name(value: Any) -> str:
    """How messages name the JSON type of a value."""
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return _type_name(value)
