"""Bundles through real stubs: registering real bundle.json files, digests, reads, lists, deletes."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pytest
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle.bundles import cnab
from tests.helpers import FIXTURES, failure

# --- fixtures and builders -------------------------------------------------------------

BUNDLE_FILES = sorted(
    {
        *FIXTURES.glob("porter/**/bundle*.json"),
        *FIXTURES.glob("porter/**/*.bundle.json"),
        *FIXTURES.glob("porter/**/.cnab/bundle.json"),
        *FIXTURES.glob("cnab-spec/examples/101.0*-bundle.json"),
        *FIXTURES.glob("cnab-to-oci/examples/**/*bundle.json"),
        *FIXTURES.glob("cnab-to-oci/derived/*.bundle.json"),
    }
)

# Real bundles that must be accepted: Porter's own output and the CNAB spec's examples.
MUST_ACCEPT = {
    "porter/pkg/porter/testdata/bundle.json": ("porter-hello", "0.1.0"),
    "porter/build/testdata/bundles/wordpress/.cnab/bundle.json": ("wordpress", "0.1.4"),
    "porter/pkg/cnab/config-adapter/testdata/mybuns-depsv1.bundle.json": ("mybuns", "0.1.2"),
    "cnab-spec/examples/101.01-bundle.json": ("helloworld", "0.1.2"),
    "cnab-spec/examples/101.02-bundle.json": ("helloworld", "1.0.0"),
    "cnab-spec/examples/101.03-bundle.json": ("helloworld", "0.1.2"),
    "cnab-to-oci/derived/e2e.bundle.json": ("hello", "0.1.0"),
    "cnab-to-oci/derived/push_test.bundle.json": ("my-app", "0.1.0"),
    # Go's encoding of nil maps ("images": null, ...): read as absent, as cnab-go does.
    "cnab-to-oci/examples/helloworld-cnab/bundle.json": ("helloworld", "0.1.1"),
    "cnab-to-oci/examples/helloworld-cnab/complete.bundle.json": ("helloworld", "0.1.1"),
}
# Fixtures the CNAB schema itself rejects only for outputs without "path" (hand-written
# Porter test data, like older Porter bundles): cnab-go and Porter treat it as optional
# (default /cnab/app/outputs/<name>), so the server accepts them.
PATHLESS_OUTPUTS = {
    "porter/pkg/porter/testdata/bundle-with-param-sources.json": {
        "bar": "/cnab/app/outputs/bar",
        "baz": "/cnab/app/outputs/baz",
        "connstr": "/cnab/app/outputs/connstr",
        "foo": "/cnab/app/outputs/foo",
    },
}


def rel(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


def go_nulls_absent(doc: Any) -> Any:
    """Go writes empty maps as null; the server reads top-level nulls as absent (cnab.parse_bundle)."""
    return {k: v for k, v in doc.items() if v is not None} if isinstance(doc, dict) else doc


@cache
def upstream_validator(*, path_optional: bool = True) -> Draft7Validator:
    """The CNAB spec's own schema (from the fixtures, not our copy): the oracle of validity;
    with ``path_optional`` as cnab-go reads it (an output's path may be left out)."""
    schemas = FIXTURES / "cnab-spec" / "schema"
    bundle = json.loads((schemas / "bundle.schema.json").read_text())
    if path_optional:
        bundle["definitions"]["output"]["required"].remove("path")
    definitions = json.loads((schemas / "definitions.schema.json").read_text())
    registry: Registry[Any] = Registry().with_resources(
        [
            (bundle["$id"], DRAFT7.create_resource(bundle)),
            (definitions["$id"], DRAFT7.create_resource(definitions)),
            (
                "http://json-schema.org/draft-07/schema",
                DRAFT7.create_resource(Draft7Validator.META_SCHEMA),
            ),
        ]
    )
    return Draft7Validator(bundle, registry=registry)


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def minimal(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": "v1.0.0",
        "name": "mybuns",
        "version": "0.1.2",
        "description": "A very thorough test bundle",
        "invocationImages": [{"image": "localhost:5000/mybuns:porter-abc", "imageType": "docker"}],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def create(stub, reference: str, bundle_json: str) -> Any:
    return stub.CreateBundle(
        pb.CreateBundleRequest(reference=reference, bundle_json=bundle_json)
    ).bundle


def create_failure(stub, reference: str, bundle_json: str):
    return failure(
        stub.CreateBundle, pb.CreateBundleRequest(reference=reference, bundle_json=bundle_json)
    )


def get(stub, reference: str) -> Any:
    return stub.GetBundle(pb.GetBundleRequest(reference=reference)).bundle


def listing(stub, **kw: Any) -> pb.ListBundlesResponse:
    return stub.ListBundles(pb.ListBundlesRequest(**kw))


# --- real bundle.json files ----------------------------------------------------------


def test_fixture_set_is_what_we_expect():
    found = {rel(p) for p in BUNDLE_FILES}
    assert set(MUST_ACCEPT) | set(PATHLESS_OUTPUTS) <= found

    def valid(p: Path, strict: bool) -> bool:
        validator = upstream_validator(path_optional=not strict)
        return validator.is_valid(go_nulls_absent(json.loads(p.read_bytes())))

    strictly_valid = {rel(p) for p in BUNDLE_FILES if valid(p, True)}
    assert set(MUST_ACCEPT) <= strictly_valid
    assert not set(PATHLESS_OUTPUTS) & strictly_valid
    assert {rel(p) for p in BUNDLE_FILES if valid(p, False)} == strictly_valid | set(
        PATHLESS_OUTPUTS
    )


@pytest.mark.parametrize("path", BUNDLE_FILES, ids=rel)
def test_real_bundle_accepted_exactly_when_the_cnab_schema_accepts_it(stub, path):
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    reference = f"example.com/fixtures/bundle@{sha256(text)}"

    if upstream_validator().is_valid(go_nulls_absent(doc)):
        created = create(stub, reference, text)
        assert created.reference == reference
        assert created.repository == "example.com/fixtures/bundle"
        assert created.tag == ""
        assert (
            created.digest
            == sha256(text)
            == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        )
        assert (created.name, created.version) == (doc["name"], doc["version"])
        assert created.description == doc.get("description", "")
        assert get(stub, reference).bundle_json == text
    else:
        err = create_failure(stub, reference, text)
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.reason == "INVALID_BUNDLE"
        assert err.violations
        assert all(f.startswith("bundle_json") for f in err.violations)


@pytest.mark.parametrize("name", sorted(MUST_ACCEPT))
def test_porter_and_spec_bundles_register_under_a_tag(stub, name):
    text = (FIXTURES / name).read_text()
    created = create(stub, "localhost:5000/mybuns:v0.1.2", text)

    assert (created.name, created.version) == MUST_ACCEPT[name]
    assert (created.repository, created.tag) == ("localhost:5000/mybuns", "v0.1.2")
    assert created.digest == sha256(text)
    assert created.create_time.seconds > 0


@pytest.mark.parametrize("name", sorted(PATHLESS_OUTPUTS))
def test_outputs_without_path_are_accepted_with_the_default_path(stub, name):
    text = (FIXTURES / name).read_text()
    created = create(stub, "example.com/x:v1", text)
    doc = json.loads(text)
    assert (created.name, created.version) == (doc["name"], doc["version"])
    assert get(stub, "example.com/x:v1").bundle_json == text  # stored as written
    paths = {o.name: o.path for o in cnab.outputs(json.loads(text))}
    assert paths == PATHLESS_OUTPUTS[name]


def test_an_output_path_outside_the_outputs_directory_is_still_refused(stub):
    bad = minimal(
        definitions={"s": {"type": "string"}},
        outputs={"o": {"definition": "s", "path": "/etc/passwd"}},
    )
    err = create_failure(stub, "example.com/x:v1", json.dumps(bad))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(err.violations) == {"bundle_json.outputs.o.path"}


# --- broken documents --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "fields"),
    [
        (minimal(name=None), {"bundle_json.name"}),
        (minimal(version=None), {"bundle_json.version"}),
        (minimal(invocationImages=None), {"bundle_json.invocationImages"}),
        (
            {"schemaVersion": "v1.0.0"},
            {"bundle_json.name", "bundle_json.version", "bundle_json.invocationImages"},
        ),
        (minimal(name=5), {"bundle_json.name"}),
        (minimal(version=["0.1.2"]), {"bundle_json.version"}),
        (minimal(invocationImages={"image": "x"}), {"bundle_json.invocationImages"}),
        (
            minimal(invocationImages=[{"imageType": "docker"}]),
            {"bundle_json.invocationImages[0].image"},
        ),
        (
            minimal(invocationImages=[{"image": "a"}, {"image": 7}]),
            {"bundle_json.invocationImages[1].image"},
        ),
        (
            minimal(parameters={"port": {"definition": 5}}),
            {"bundle_json.parameters.port.definition", "bundle_json.parameters.port.destination"},
        ),
        (
            minimal(credentials={"kubeconfig": {"path": 1}}),
            {"bundle_json.credentials.kubeconfig.path"},
        ),
        (
            minimal(outputs={"port": {"path": "/cnab/app/outputs/port"}}),
            {"bundle_json.outputs.port.definition"},
        ),
        (minimal(images=[]), {"bundle_json.images"}),
        (minimal(unknownTopLevel=True), {"bundle_json"}),
        (
            minimal(description=None, maintainers=[{"email": "x@example.com"}]),
            {"bundle_json.maintainers[0].name"},
        ),
    ],
    ids=[
        "no-name",
        "no-version",
        "no-invocationImages",
        "nothing-required",
        "name-not-string",
        "version-not-string",
        "invocationImages-not-array",
        "image-missing",
        "second-image-wrong-type",
        "parameter-definition",
        "credential-path-type",
        "output-without-definition",
        "images-not-object",
        "unknown-property",
        "maintainer-without-name",
    ],
)
def test_broken_bundle_lists_violations_by_json_path(stub, doc, fields):
    err = create_failure(stub, "example.com/app:v1", json.dumps(doc))

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_BUNDLE"
    assert err.domain == "porter-bundle"
    assert set(err.violations) == fields
    for f in fields:
        assert f in err.message


@pytest.mark.parametrize(
    "text",
    ["{", "not json", '{"name": "x",}', "{'name': 'x'}", '{"a": 1} trailing'],
)
def test_bundle_that_is_not_json(stub, text):
    err = create_failure(stub, "example.com/app:v1", text)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_BUNDLE"
    assert list(err.violations) == ["bundle_json"]
    assert "not valid JSON" in err.violations["bundle_json"]


@pytest.mark.parametrize("text", ["[]", '"bundle"', "42", "null", "true", json.dumps([minimal()])])
def test_bundle_that_is_not_an_object(stub, text):
    err = create_failure(stub, "example.com/app:v1", text)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_BUNDLE"
    assert err.violations == {"bundle_json": "bundle.json must be a JSON object"}


def test_empty_bundle_json_is_required(stub):
    err = create_failure(stub, "example.com/app:v1", "")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == ["bundle_json"]


def test_bundle_json_over_4_mib_is_refused(stub):
    text = json.dumps(minimal(custom={"blob": "x" * (4 * 1024 * 1024)}))
    err = create_failure(stub, "example.com/app:v1", text)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == ["bundle_json"]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        json.dumps(minimal(custom={"deep": json.loads("[" * 500 + "]" * 500)})),
    ],
    ids=["beyond-the-parser", "beyond-the-limit"],
)
def test_absurdly_nested_bundle_is_invalid_argument_not_internal(stub, text):
    err = create_failure(stub, "example.com/app:v1", text)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_BUNDLE"
    assert list(err.violations) == ["bundle_json"]


# --- references and digests ------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "example.com/app",
        "example.com/App:v1",
        "example.com/app:",
        "example.com/app:.v1",
        "example.com/app:v1/x",
        "example.com/app@",
        "example.com/app@sha256:abc",
        "example.com/app@sha256:" + "A" * 64,
        "https://example.com/app:v1",
        ":v1",
    ],
)
def test_bad_reference(stub, reference):
    for call, request in [
        (
            stub.CreateBundle,
            pb.CreateBundleRequest(reference=reference, bundle_json=json.dumps(minimal())),
        ),
        (stub.GetBundle, pb.GetBundleRequest(reference=reference)),
        (stub.DeleteBundle, pb.DeleteBundleRequest(reference=reference)),
    ]:
        err = failure(call, request)
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT, call
        assert list(err.violations) == ["reference"]


def test_digest_reference_must_match_the_exact_bytes(stub):
    doc = minimal()
    compact = json.dumps(doc, separators=(",", ":"))
    pretty = json.dumps(doc, indent=2)
    assert sha256(compact) != sha256(pretty)

    err = create_failure(stub, f"example.com/app@{sha256(pretty)}", compact)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "DIGEST_MISMATCH"
    assert list(err.violations) == ["reference"]
    assert sha256(compact) in err.violations["reference"]

    created = create(stub, f"example.com/app@{sha256(pretty)}", pretty)
    assert created.digest == sha256(pretty)
    assert get(stub, f"example.com/app@{sha256(pretty)}").bundle_json == pretty


def test_digest_is_of_the_utf8_bytes(stub):
    text = json.dumps(minimal(description="Grüße, ☃ and 𝄞"), ensure_ascii=False)
    created = create(stub, f"example.com/app@{sha256(text)}", text)

    assert created.digest == sha256(text)
    assert created.description == "Grüße, ☃ and 𝄞"
    assert get(stub, created.reference).bundle_json == text


def test_sha512_reference_never_matches_a_sha256_digest(stub):
    err = create_failure(stub, "example.com/app@sha512:" + "a" * 128, json.dumps(minimal()))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "DIGEST_MISMATCH"


def test_tag_reference_records_the_digest(stub):
    text = json.dumps(minimal())
    created = create(stub, "localhost:5000/mybuns:v0.1.2", text)

    assert created.reference == "localhost:5000/mybuns:v0.1.2"
    assert created.digest == sha256(text)
    assert created.bundle_json == text


# --- get, list, delete ----------------------------------------------------------------


def test_get_returns_bundle_json_and_list_does_not(stub):
    text = json.dumps(minimal(), indent=3)  # stored as given, whitespace included
    created = create(stub, "localhost:5000/mybuns:v0.1.2", text)

    got = get(stub, "localhost:5000/mybuns:v0.1.2")
    assert got == created
    assert got.bundle_json == text

    listed = listing(stub).bundles
    assert len(listed) == 1
    assert listed[0].bundle_json == ""
    expected = pb.GetBundleResponse(bundle=created).bundle
    expected.bundle_json = ""
    assert listed[0] == expected


def test_get_missing_is_not_found(stub):
    err = failure(stub.GetBundle, pb.GetBundleRequest(reference="localhost:5000/mybuns:v0.1.2"))
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "BUNDLE_NOT_FOUND"
    assert err.metadata == {"reference": "localhost:5000/mybuns:v0.1.2"}


def test_duplicate_reference_is_already_exists(stub):
    first = create(stub, "localhost:5000/mybuns:v0.1.2", json.dumps(minimal()))
    err = create_failure(stub, "localhost:5000/mybuns:v0.1.2", json.dumps(minimal(version="0.2.0")))

    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert err.reason == "BUNDLE_EXISTS"
    assert err.metadata == {"reference": "localhost:5000/mybuns:v0.1.2"}
    assert get(stub, "localhost:5000/mybuns:v0.1.2") == first


def test_one_document_under_several_references(stub):
    text = json.dumps(minimal())
    create(stub, "localhost:5000/mybuns:v0.1.2", text)
    create(stub, "localhost:5000/mybuns:latest", text)
    create(stub, f"localhost:5000/mybuns@{sha256(text)}", text)

    stub.DeleteBundle(pb.DeleteBundleRequest(reference="localhost:5000/mybuns:latest"))

    assert get(stub, "localhost:5000/mybuns:v0.1.2").bundle_json == text
    assert get(stub, f"localhost:5000/mybuns@{sha256(text)}").bundle_json == text
    assert listing(stub).total_size == 2


def test_delete_then_not_found_and_the_reference_is_free_again(stub):
    create(stub, "localhost:5000/mybuns:v0.1.2", json.dumps(minimal()))

    stub.DeleteBundle(pb.DeleteBundleRequest(reference="localhost:5000/mybuns:v0.1.2"))

    for call, request in [
        (stub.GetBundle, pb.GetBundleRequest(reference="localhost:5000/mybuns:v0.1.2")),
        (stub.DeleteBundle, pb.DeleteBundleRequest(reference="localhost:5000/mybuns:v0.1.2")),
    ]:
        err = failure(call, request)
        assert err.code == grpc.StatusCode.NOT_FOUND
        assert err.reason == "BUNDLE_NOT_FOUND"
    assert listing(stub).total_size == 0

    moved = create(stub, "localhost:5000/mybuns:v0.1.2", json.dumps(minimal(version="0.1.3")))
    assert get(stub, "localhost:5000/mybuns:v0.1.2").version == "0.1.3" == moved.version


@pytest.fixture
def registered(stub):
    refs = [
        "example.com/other:v1",
        "ghcr.io/getporter/porter-hello:v0.2.0",
        "localhost:5000/mybuns:latest",
        "localhost:5000/mybuns:v0.1.2",
        "localhost:5000/mybuns:v0.1.3",
        "localhost:5000/myenv:v0.1.0",
        "example.com/tagged:MyBuns",
    ]
    for i, ref in enumerate(reversed(refs)):
        create(stub, ref, json.dumps(minimal(version=f"0.0.{i}")))
    return sorted(refs)


def test_list_sorted_by_reference_with_total(stub, registered):
    resp = listing(stub)
    assert [b.reference for b in resp.bundles] == registered
    assert resp.total_size == len(registered)
    assert resp.next_page_token == ""


def test_list_name_filter_is_a_case_sensitive_substring(stub, registered):
    resp = listing(stub, name="mybuns")
    assert [b.reference for b in resp.bundles] == [
        "localhost:5000/mybuns:latest",
        "localhost:5000/mybuns:v0.1.2",
        "localhost:5000/mybuns:v0.1.3",
    ]
    assert resp.total_size == 3
    assert [b.reference for b in listing(stub, name="MyBuns").bundles] == [
        "example.com/tagged:MyBuns"
    ]
    assert listing(stub, name="my_buns").total_size == 0
    assert listing(stub, name="%").total_size == 0


@pytest.mark.parametrize("filters", [{}, {"name": "localhost"}, {"name": "o"}])
@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_list_paging_walks_every_bundle_once(stub, registered, filters, page_size):
    want = [b.reference for b in listing(stub, **filters).bundles]
    got: list[str] = []
    token = ""
    while True:
        resp = listing(stub, page_size=page_size, page_token=token, **filters)
        assert len(resp.bundles) <= page_size
        assert resp.total_size == len(want)
        got += [b.reference for b in resp.bundles]
        token = resp.next_page_token
        if not token:
            break
    assert got == want


def test_list_skip(stub, registered):
    resp = listing(stub, skip=5)
    assert [b.reference for b in resp.bundles] == registered[5:]
    assert resp.total_size == len(registered)
    filtered = listing(stub, name="mybuns", skip=2)
    assert [b.reference for b in filtered.bundles] == ["localhost:5000/mybuns:v0.1.3"]
    assert filtered.total_size == 3
