"""Porter documents without a server: reading, checking, mapping both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from porter_bundle import documents as d
from porter_bundle.documents import DocumentKind, SchemaCheck
from porter_bundle.errors import InvalidArgument
from tests.porter_documents import EXPECTED, FOLDERS, fixture_files, rel

INSTALLATION, CREDENTIAL_SET, PARAMETER_SET = (
    DocumentKind.INSTALLATION,
    DocumentKind.CREDENTIAL_SET,
    DocumentKind.PARAMETER_SET,
)
EXACT = SchemaCheck.EXACT


def refused(fn: Any, *args: Any, **kwargs: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        fn(*args, **kwargs)
    return info.value


def violations(err: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in err.violations}


def check(
    doc: dict[str, Any] | str, kind: DocumentKind, strategy: SchemaCheck = EXACT
) -> d.Validated:
    raw = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
    return d.validate(d.parse_one(raw), kind, strategy)


def inst(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": "1.0.2",
        "name": "app",
        "bundle": {"repository": "example.com/app", "version": "1.0.0"},
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def cset(*entries: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"schemaVersion": "1.0.1", "name": "creds", "credentials": list(entries), **fields}


def pset(*entries: dict[str, Any], version: str = "1.1.0", **fields: Any) -> dict[str, Any]:
    return {"schemaVersion": version, "name": "params", "parameters": list(entries), **fields}


# --- the fixtures -------------------------------------------------------------------------------


def test_the_table_names_every_fixture():
    assert all(folder.is_dir() for folder in FOLDERS)
    assert sorted(rel(p) for p in fixture_files()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_accepted_or_refused_as_porter_would(name):
    expect = EXPECTED[name]
    path = FOLDERS[0].parents[2] / name
    raw = path.read_bytes()
    if expect.accepted:
        [doc] = d.parse_stream(raw)
        assert d.detect_kind(doc.value) is expect.kind
        validated = d.validate(d.porter_value(doc), expect.kind, EXACT)
        assert validated.warnings == expect.warns
        resource = d.to_resource(validated)
        # Export and read back: the same resource, in YAML and in JSON.
        exported = _export(resource)
        for fmt in ("yaml", "json"):
            again = d.validate(d.parse_one(d.render(exported, fmt).encode()), expect.kind, EXACT)
            assert d.to_resource(again) == resource, fmt
        return
    err = refused(lambda: d.validate(d.parse_one(raw), expect.kind, EXACT))
    assert err.reason == expect.reason
    assert list(violations(err)) == [expect.field]
    for text in expect.says:
        assert text in violations(err)[expect.field]


def _export(resource: Any) -> dict[str, Any]:
    if resource.DESCRIPTOR.name == "Installation":
        return d.from_installation(resource)
    if resource.DESCRIPTOR.name == "CredentialSet":
        return d.from_credential_set(resource)
    return d.from_parameter_set(resource)


def test_mapping_of_a_porter_installation():
    path = FOLDERS[0] / "installations" / "mybuns.yaml"
    validated = d.validate(d.parse_one(path.read_bytes()), INSTALLATION, EXACT)
    got = d.to_resource(validated)
    assert got.name == "mybuns" and got.namespace == "" and got.schema_version == "1.0.2"
    assert dict(got.labels) == {
        "generator": "porter-operator",
        "generatorVersion": "v0.2.0",
        "thing": "1",
    }
    assert (got.bundle.repository, got.bundle.version) == ("localhost:5000/mybuns", "v0.1.2")
    assert list(got.credential_sets) == ["mybuns"] and list(got.parameter_sets) == ["mybuns"]
    assert d.from_installation(got)["parameters"] == {"password": "supersecret"}


def test_operator_resource_spec_is_the_document():
    path = FOLDERS[2] / "config" / "samples" / "porter-hello.yaml"
    validated = d.validate(d.parse_one(path.read_bytes()), INSTALLATION, EXACT)
    assert validated.prefix == "spec"
    got = d.to_resource(validated)
    assert (got.namespace, got.name, got.bundle.version) == ("operator", "hello", "0.2.0")
    err = refused(lambda: d.validate(d.parse_one(path.read_bytes()), PARAMETER_SET, EXACT))
    assert err.reason == "WRONG_DOCUMENT_TYPE" and "kind" in violations(err)


# --- reading ------------------------------------------------------------------------------------


def test_yaml_stream_json_and_empty_documents():
    stream = b"---\nname: a\n---\n# nothing\n---\nname: b\n...\n"
    assert [p.value for p in d.parse_stream(stream)] == [{"name": "a"}, {"name": "b"}]
    assert [p.index for p in d.parse_stream(stream)] == [1, 3]  # position in the stream
    assert d.parse_stream(b'{"name": "a", "n": [1, 2.5, true, null]}')[0].value == {
        "name": "a",
        "n": [1, 2.5, True, None],
    }
    assert d.parse_stream(b"  \n# only a comment\n") == []
    assert d.parse_one(b"{name: flow}") == {"name": "flow"}  # a YAML flow mapping
    err = refused(d.parse_one, b"")
    assert violations(err) == {"document": "the document is empty"}
    err = refused(d.parse_one, b"name: a\n---\nname: b\n")
    assert "2 documents" in violations(err)["document"]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"name: [unclosed", "not valid YAML or JSON"),
        (b'{"name": "a" "b"}', "not valid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"a: 1\na: 2\n", "duplicate key 'a'"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b"a: &x 1\nb: *x\n", "anchors and aliases are not allowed"),
        (b"<<: {a: 1}\n", ""),  # merge keys are plain keys: an unknown field later
        (b'{"a": NaN}', "NaN"),
        (b"a: !!binary aGVsbG8=\n", "binary value is not a JSON value"),
        (b"a: !!timestamp 2001-12-14\n", "date is not a JSON value"),
        (b"a: !!python/object:os.system ls\n", "not valid YAML or JSON"),
        (b"a: !!bool maybe\n", "not valid YAML or JSON"),
        (b"a: !!int 0x1F\n", "not a decimal integer"),
        (b"1: one\n", "keys must be strings"),
        (b"[" * 40 + b"]" * 40, "nested deeper than 32"),
        (
            b"a:" + b"".join(b"\n" + b" " * i + b"-" for i in range(1, 1200)),
            "nested deeper than 32",
        ),
        (b"{" * 5000, "nested deeper than 32"),
    ],
)
def test_bad_bytes(raw, says):
    if not says:
        assert d.parse_one(raw) == {"<<": {"a": 1}}
        return
    err = refused(d.parse_stream, raw)
    assert err.reason == "INVALID_DOCUMENT"
    assert any(says in text for text in violations(err).values()), violations(err)


def test_size_limit():
    big = b"name: " + b"x" * (1024 * 1024) + b"\n"
    assert "larger than 1048576 bytes" in violations(refused(d.parse_one, big))["document"]
    assert d.parse_stream(big, max_bytes=None)[0].value["name"].startswith("xxx")


def test_yaml_scalars_read_as_porter_reads_them():
    text = "a: on\nb: yes\nc: 0755\nd: 2024-01-01\ne: 1e3\nf: 0x1F\ng: 1_000\nh: 10:30\ni: True\nj: ~\nk: .5\n"
    assert d.parse_one(text.encode()) == {
        "a": "on",
        "b": "yes",
        "c": 755,
        "d": "2024-01-01",
        "e": 1000.0,
        "f": "0x1F",
        "g": "1_000",
        "h": "10:30",
        "i": True,
        "j": None,
        "k": 0.5,
    }


def test_rendered_yaml_keeps_strings_strings():
    strings = ["on", "yes", "1e3", "0755", "2024-01-01", "null", "", "true", "1.0", "10:30", "~"]
    doc = {"labels": {f"k{i}": s for i, s in enumerate(strings)}, "n": [1, 2.5, 1e20, True, None]}
    text = d.render(doc)
    assert d.parse_one(text.encode()) == doc  # this package's reader
    assert yaml.safe_load(text) == doc  # and a YAML 1.1 reader
    assert json.loads(d.render(doc, "json")) == doc


# --- the type of document -----------------------------------------------------------------------


def test_wrong_type_of_document():
    err = refused(
        check,
        {**cset({"name": "a", "source": {"env": "A"}}), "schemaType": "CredentialSet"},
        INSTALLATION,
    )
    assert err.reason == "WRONG_DOCUMENT_TYPE"
    assert violations(err) == {
        "schemaType": "invalid schemaType CredentialSet, expected Installation"
    }
    err = refused(check, cset({"name": "a", "source": {"env": "A"}}), INSTALLATION)  # no schemaType
    assert violations(err) == {
        "document": "this is a CredentialSet document (by its fields), expected Installation"
    }
    err = refused(check, "- a\n- b\n", PARAMETER_SET)
    assert violations(err) == {"document": "a Porter document is a mapping of fields, not a list"}
    assert check(
        {**inst(), "schemaType": "installation"}, INSTALLATION
    )  # case-insensitive, as Porter


def test_detect_kind():
    assert d.detect_kind(inst()) is INSTALLATION
    assert d.detect_kind({"name": "x", "parameters": {"a": 1}}) is INSTALLATION
    assert d.detect_kind(cset()) is CREDENTIAL_SET
    assert d.detect_kind(pset()) is PARAMETER_SET
    assert d.detect_kind({"schemaType": "ParameterSet"}) is PARAMETER_SET
    assert d.detect_kind({"schemaType": "Bundle"}) is None
    assert d.detect_kind({"name": "x"}) is None
    assert d.detect_kind(["x"]) is None


# --- schemaVersion ------------------------------------------------------------------------------

M, N, X = SchemaCheck.MAJOR, SchemaCheck.NONE, SchemaCheck.EXACT
MINOR = SchemaCheck.MINOR


@pytest.mark.parametrize(
    ("kind", "found", "strategy", "stored", "warns"),
    [
        (INSTALLATION, "1.0.2", X, "1.0.2", False),
        (INSTALLATION, "v1.0.2", X, "1.0.2", False),
        (INSTALLATION, "1.0.3", MINOR, "1.0.3", True),
        (INSTALLATION, "1.0.2-beta.1", MINOR, "1.0.2", True),
        (INSTALLATION, "1.1.0", M, "1.1.0", True),
        (INSTALLATION, "2.0.0", N, "2.0.0", True),
        (INSTALLATION, "0.38.5", N, "0.38.5", True),
        (INSTALLATION, None, N, "1.0.2", True),
        (INSTALLATION, "banana", N, "1.0.2", True),
        (CREDENTIAL_SET, "1.0.1", X, "1.0.1", False),
        (CREDENTIAL_SET, "1.0", M, "1.0.0", True),
        (PARAMETER_SET, "1.0.1", X, "1.0.1", False),
        (PARAMETER_SET, "1.1.0", X, "1.1.0", False),
        (PARAMETER_SET, "1.0.5", MINOR, "1.0.5", True),
        (PARAMETER_SET, "1.1.7", MINOR, "1.1.7", True),
    ],
)
def test_schema_version_accepted(kind, found, strategy, stored, warns):
    got, warning = d.check_schema_version(kind, found, strategy)
    assert got == stored
    assert bool(warning) is warns
    if warns:
        assert "supported" in warning and " ".join(d.SUPPORTED_VERSIONS[kind]) in warning.replace(
            " or ", " "
        )


@pytest.mark.parametrize(
    ("kind", "found", "strategy", "says"),
    [
        (
            INSTALLATION,
            "1.0.3",
            X,
            "the schema version is 1.0.3 but the supported Installation schema version is 1.0.2",
        ),
        (INSTALLATION, "1.0.2-beta.1", X, "the schema version is 1.0.2-beta.1"),
        (INSTALLATION, "1.1.0", MINOR, "MAJOR.MINOR values do not match"),
        (INSTALLATION, "2.0.0", M, "MAJOR values do not match"),
        (INSTALLATION, "0.38.5", M, "the schema version is 0.38.5"),
        (
            INSTALLATION,
            None,
            X,
            "schemaVersion is missing (none); the supported Installation schema version is 1.0.2",
        ),
        (INSTALLATION, "banana", M, "banana is not a valid semantic version"),
        (CREDENTIAL_SET, "1.0.2", X, "supported CredentialSet schema version is 1.0.1"),
        (PARAMETER_SET, "1.2.0", MINOR, "is 1.0.1 or 1.1.0"),
    ],
)
def test_schema_version_refused(kind, found, strategy, says):
    err = refused(d.check_schema_version, kind, found, strategy)
    assert err.reason == "UNSUPPORTED_SCHEMA_VERSION"
    assert says in violations(err)["schemaVersion"]
    assert f"schema check '{strategy.value}'" in violations(err)["schemaVersion"]


def test_schema_check_names():
    assert SchemaCheck.parse(" Minor ") is SchemaCheck.MINOR
    with pytest.raises(ValueError, match="exact, minor, major, none"):
        SchemaCheck.parse("loose")


def test_version_check_applies_to_documents():
    doc = inst(schemaVersion="0.38.5")
    assert violations(refused(check, doc, INSTALLATION))["schemaVersion"].startswith(
        "the schema version is 0.38.5"
    )
    validated = check(doc, INSTALLATION, N)
    assert validated.schema_version == "0.38.5" and validated.warnings
    assert check(inst(schemaVersion=None), INSTALLATION, N).schema_version == "1.0.2"
    err = refused(check, inst(schemaVersion=1.0), INSTALLATION)
    assert violations(err) == {"schemaVersion": "must be a string such as 1.0.2, not a number"}


# --- the schema and the rules it cannot say -----------------------------------------------------


def test_unknown_and_missing_fields_with_paths():
    doc = inst(bundle={"repository": "example.com/app", "version": "1", "branch": "main"}, extra=1)
    doc.pop("name")
    err = refused(check, doc, INSTALLATION)
    got = violations(err)
    assert err.reason == "INVALID_DOCUMENT"
    assert set(got) == {"name", "extra", "bundle.branch"}
    assert got["name"] == "is required"
    assert got["extra"].startswith("unknown field; an Installation document has: name, namespace")
    assert got["bundle.branch"].startswith("unknown field; 'bundle' has: repository")
    err = refused(check, inst(bundle={"repository": "example.com/app"}), INSTALLATION)
    assert violations(err) == {"bundle": "one of digest, version or tag is required"}
    err = refused(
        check, inst(bundle={"version": "1.0.0"}, labels={"a": 1}, credentialSets="x"), INSTALLATION
    )
    assert violations(err) == {
        "bundle.repository": "is required",
        "credentialSets": "must be a list, not a string",
        "labels.a": "must be a string, not a number",
    }


def test_installation_documents_as_porter_reads_them():
    doc = inst(
        uninstalled=True,
        parameters={"n": 3, "s": "x", "o": {"a": [1]}},
        bundle={
            "repository": "example.com/app",
            "digest": "sha256:" + "a" * 64,
            "version": "1.0.0",
        },
        status={"created": "2024-01-01T00:00:00Z"},
        created="2024-01-01T00:00:00Z",
        custom={"anything": {"goes": True}},
    )
    got = d.to_resource(check(doc, INSTALLATION))
    assert got.uninstalled and got.bundle.digest and got.bundle.version
    exported = d.from_installation(got)
    assert exported["parameters"] == {"n": 3, "s": "x", "o": {"a": [1]}}
    assert "status" not in exported and "created" not in exported
    assert exported["custom"] == {"anything": {"goes": True}}


def test_sources_need_exactly_one_kind():
    err = refused(
        check,
        cset(
            {"name": "none", "source": {}},
            {"name": "two", "source": {"env": "A", "value": "s3cret-value"}},
            {"name": "vault", "source": {"vault": "x"}},
            {"name": "nosource"},
            {"name": "num", "source": {"value": 123456}},
            {"name": "none", "source": {"env": "B"}},
        ),
        CREDENTIAL_SET,
    )
    got = violations(err)
    assert got == {
        "credentials[0].source": "needs exactly one of value, env, path, command, secret; it has none",
        "credentials[1].source": "needs exactly one of value, env, path, command, secret; it has env, value",
        "credentials[2].source.vault": "unknown source 'vault'; a source is one of value, env, path, command, secret",
        "credentials[2].source": "needs exactly one of value, env, path, command, secret; it has none",
        "credentials[3].source": "is required",
        "credentials[4].source.value": "must be a string, not a number",
    }  # credentials[5] repeats "none": the last entry wins (test_repeated_names_last_one_wins)
    assert "s3cret-value" not in err.message and "123456" not in err.message


def test_parameter_values_typed_from_1_1_0():
    entries = [{"name": "n", "source": {"value": 3}}, {"name": "o", "source": {"value": {"a": 1}}}]
    assert check(pset(*entries), PARAMETER_SET)
    err = refused(check, pset(*entries, version="1.0.1"), PARAMETER_SET)
    assert violations(err) == {
        "parameters[0].source.value": "schemaVersion 1.0.1 takes string values only; ParameterSet 1.1.0 takes a number",
        "parameters[1].source.value": "schemaVersion 1.0.1 takes string values only; ParameterSet 1.1.0 takes a mapping",
    }
    err = refused(check, pset({"name": "x", "source": {"value": None}}), PARAMETER_SET)
    assert "parameters[0].source.value" in violations(err)


def test_sets_refuse_custom_and_take_redacted_for_credentials_only():
    err = refused(
        check, cset({"name": "a", "source": {"env": "A"}}, custom={"x": 1}), CREDENTIAL_SET
    )
    assert violations(err) == {"custom": "custom is not kept for credential sets; remove it"}
    got = d.to_resource(check(cset({"name": "a", "source": {"redacted": True}}), CREDENTIAL_SET))
    assert (
        got.credentials[0].source.redacted and got.credentials[0].source.WhichOneof("kind") is None
    )
    err = refused(
        check,
        cset(
            {"name": "a", "source": {"redacted": False}},
            {"name": "b", "source": {"redacted": True, "env": "B"}},
        ),
        CREDENTIAL_SET,
    )
    assert violations(err) == {
        "credentials[0].source.redacted": "must be true (it marks a withheld literal value)",
        "credentials[1].source": "redacted keeps the stored value and takes no other source",
    }
    err = refused(check, pset({"name": "a", "source": {"redacted": True}}), PARAMETER_SET)
    assert "parameters[0].source.redacted" in violations(err)


def test_credential_export_withholds_literal_values():
    got = d.to_resource(
        check(
            cset(
                {"name": "a", "source": {"value": "s3cret"}}, {"name": "b", "source": {"env": "B"}}
            ),
            CREDENTIAL_SET,
        )
    )
    got.credentials[0].source.ClearField("value")  # what the API returns: redacted
    got.credentials[0].source.redacted = True
    exported = d.from_credential_set(got)
    assert exported["credentials"] == [
        {"name": "a", "source": {"redacted": True}},
        {"name": "b", "source": {"env": "B"}},
    ]
    assert exported["schemaType"] == "CredentialSet" and exported["namespace"] == ""
