"""porter_bundle.bundles.cnab: parsing and validating bundle.json documents."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

import pytest

from porter_bundle.bundles.cnab import (
    ParameterSource,
    digest_of,
    parameter_sources,
    parse_bundle,
)
from porter_bundle.errors import InvalidArgument
from tests.helpers import FIXTURES, cnab_validator


def minimal(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": "v1.0.0",
        "name": "mybuns",
        "version": "0.1.2",
        "invocationImages": [{"image": "localhost:5000/mybuns:porter-abc"}],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def violations(data: bytes, **kw: Any) -> tuple[str, list[tuple[str, str]]]:
    """The reason and the (field, description) list of a document that must be refused."""
    with pytest.raises(InvalidArgument) as info:
        parse_bundle(data, **kw)
    return info.value.reason, [(v.field, v.description) for v in info.value.violations]


def test_our_schema_copy_is_the_cnab_spec_schema():
    ours = resources.files("porter_bundle.bundles").joinpath("schema")
    upstream = FIXTURES / "cnab-spec" / "schema"
    for name in ("bundle.schema.json", "definitions.schema.json"):
        assert json.loads(ours.joinpath(name).read_text()) == json.loads(
            (upstream / name).read_text()
        )


def test_parse_returns_the_document_its_digest_and_identity():
    data = (FIXTURES / "porter/pkg/porter/testdata/bundle.json").read_bytes()
    parsed = parse_bundle(data)

    assert parsed.raw == data
    assert parsed.digest == "sha256:" + hashlib.sha256(data).hexdigest() == digest_of(data)
    assert (parsed.name, parsed.version) == ("porter-hello", "0.1.0")
    assert parsed.description == "A bundle with a custom action"
    assert parsed.doc == json.loads(data)


def test_description_is_optional():
    assert parse_bundle(raw(minimal())).description == ""


def test_digest_depends_on_the_exact_bytes():
    doc = minimal()
    assert parse_bundle(raw(doc)).digest != parse_bundle(json.dumps(doc, indent=2).encode()).digest
    assert (
        digest_of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_missing_required_properties_are_named_by_their_own_path():
    reason, found = violations(raw({"schemaVersion": "v1.0.0"}))

    assert reason == "INVALID_BUNDLE"
    assert sorted(f for f, _ in found) == [
        "bundle_json.invocationImages",
        "bundle_json.name",
        "bundle_json.version",
    ]
    assert ("bundle_json.name", "'name' is a required property") in found


def test_nested_paths_use_dots_for_keys_and_brackets_for_indices():
    doc = minimal(
        invocationImages=[{"image": "ok"}, {"image": "ok", "size": "big"}],
        outputs={"port": {"definition": "port", "path": "/tmp/port"}},
        parameters={"p": {"definition": "d", "destination": {"env": 1}}},
    )
    _, found = violations(raw(doc))

    assert sorted(f for f, _ in found) == [
        "bundle_json.invocationImages[1].size",
        "bundle_json.outputs.port.path",
        "bundle_json.parameters.p.destination.env",
    ]


def test_root_field_name_is_configurable():
    _, found = violations(raw(minimal(name=1)), field="document")
    assert [f for f, _ in found] == ["document.name"]


def test_violations_are_capped_at_50():
    doc = minimal(images={f"img{i:03d}": {} for i in range(80)})
    _, found = violations(raw(doc))
    assert len(found) == 50
    assert all(f.startswith("bundle_json.images.img") and f.endswith(".image") for f, _ in found)


def test_violation_descriptions_are_bounded():
    _, found = violations(raw(minimal(version=["x" * 2000])))
    assert [f for f, _ in found] == ["bundle_json.version"]
    assert len(found[0][1]) == 500


@pytest.mark.parametrize(
    "data", [b"", b"{", b"\xff\xfe{}", b'{"name": NaN', '{"name": "\u00e9"'.encode("latin-1")]
)
def test_not_json(data):
    reason, found = violations(data)
    assert reason == "INVALID_BUNDLE"
    assert [f for f, _ in found] == ["bundle_json"]
    assert found[0][1].startswith("not valid JSON")


@pytest.mark.parametrize("data", [b"[]", b"1", b'"x"', b"null"])
def test_not_an_object(data):
    assert violations(data) == (
        "INVALID_BUNDLE",
        [("bundle_json", "bundle.json must be a JSON object")],
    )


def test_larger_than_4_mib_is_refused_before_parsing():
    data = b"{" + b" " * (4 * 1024 * 1024) + b"}"
    reason, found = violations(data)
    assert reason == "INVALID_BUNDLE"
    assert [f for f, _ in found] == ["bundle_json"]
    assert "larger than" in found[0][1]


def nested_definitions(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return minimal(definitions={"deep": schema})


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,
        b'{"custom": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        raw(nested_definitions(200)),
        raw(minimal(custom={"x": json.loads("[" * 65 + "]" * 65)})),
    ],
    ids=["parser-recursion", "deep-array", "validator-recursion", "just-over-the-limit"],
)
def test_deep_nesting_is_invalid_argument_not_recursion_error(data):
    reason, found = violations(data)
    assert reason == "INVALID_BUNDLE"
    assert [f for f, _ in found] == ["bundle_json"]
    assert "nested deeper than" in found[0][1]


def test_realistic_nesting_is_fine():
    assert parse_bundle(raw(nested_definitions(25))).name == "mybuns"
    assert (
        parse_bundle(raw(minimal(custom={"x": json.loads("[" * 60 + "]" * 60)}))).name == "mybuns"
    )


def test_parameter_sources_of_the_spec_example_and_porters_bundle():
    example = json.loads(
        (FIXTURES / "cnab-spec/examples/810.01-parameter-sources.json").read_text()
    )
    cnab_validator("parameter-sources.schema.json").validate(example)
    assert parameter_sources({"custom": {"io.cnab.parameter-sources": example}}) == {
        "tfstate": [ParameterSource("tfstate")]
    }
    porter = json.loads(
        (FIXTURES / "porter/pkg/porter/testdata/bundle-with-param-sources.json").read_text()
    )
    # connstr: its own output first, then the mysql dependency's (Porter's dependencies.output).
    assert parameter_sources(porter) == {
        "foo": [ParameterSource("foo")],
        "bar": [ParameterSource("bar")],
        "connstr": [ParameterSource("connstr"), ParameterSource("connstr", "mysql")],
    }
    only_dependency = {
        "x": {"priority": ["dependencies.output", "elsewhere"], "sources": {"elsewhere": {}}}
    }
    assert parameter_sources({"custom": {"io.cnab.parameter-sources": only_dependency}}) == {}
    assert parameter_sources({"custom": {"io.cnab.parameter-sources": "nonsense"}}) == {}
    assert parameter_sources({}) == {}
