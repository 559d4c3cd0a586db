"""The cnab-to-oci layout, byte for byte against what cnab-to-oci v0.6.1 pushes."""

from __future__ import annotations

import json
import re

import pytest

from porter_bundle.bundles import layout
from tests.helpers import FIXTURES

DERIVED = FIXTURES / "cnab-to-oci" / "derived"


def _fixture(name: str) -> bytes:
    return (DERIVED / name).read_bytes().rstrip(b"\n")


@pytest.mark.parametrize("name", ["e2e", "push_test"])
def test_build_is_byte_exact(name: str) -> None:
    raw = _fixture(f"{name}.bundle.json")
    built = layout.build(json.loads(raw))
    assert built.config == raw
    assert built.config_manifest == _fixture(f"{name}.config-manifest.json")
    assert built.index == _fixture(f"{name}.index.json")
    assert built.digest == layout.digest_of(built.index)


@pytest.mark.parametrize("name", ["e2e", "push_test"])
def test_parse_finds_the_config_blob(name: str) -> None:
    raw = _fixture(f"{name}.bundle.json")
    entry = layout.config_manifest_of(_fixture(f"{name}.index.json"), layout.OCI_INDEX)
    manifest = _fixture(f"{name}.config-manifest.json")
    assert entry.digest == layout.digest_of(manifest)
    assert entry.size == len(manifest)
    config = layout.config_blob_of(manifest)
    assert (config.digest, config.size) == (layout.digest_of(raw), len(raw))


def test_docker_fallback_config_manifest_is_read() -> None:
    config = layout.config_blob_of(_fixture("push_test.fallback-docker-config-manifest.json"))
    assert config.media_type == layout.DOCKER_IMAGE_CONFIG
    assert config.digest == layout.digest_of(_fixture("push_test.bundle.json"))


def test_go_escapes_html_characters() -> None:
    assert layout.go_json({"d": "<b>&</b>", "u": "é"}) == (
        '{"d":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e","u":"é"}'.encode()
    )


@pytest.mark.parametrize(
    ("body", "media_type", "words"),
    [
        (b"not json", "", "not JSON"),
        (b"[]", "", "not a JSON object"),
        (b'{"schemaVersion":2,"config":{},"layers":[]}', layout.OCI_MANIFEST, "not a CNAB bundle"),
        (b'{"schemaVersion":2,"manifests":[]}', "", "io.cnab.manifest.type=config"),
        (
            b'{"schemaVersion":2,"manifests":[{"annotations":{"io.cnab.manifest.type":"config"},'
            b'"digest":"md5:x","size":1}]}',
            "",
            "no valid digest",
        ),
    ],
)
def test_what_is_not_a_bundle(body: bytes, media_type: str, words: str) -> None:
    with pytest.raises(layout.LayoutError, match=re.escape(words)):
        layout.config_manifest_of(body, media_type)


def test_config_of_another_type_is_not_a_bundle() -> None:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"mediaType": "text/plain", "digest": "sha256:" + "a" * 64, "size": 3},
        }
    ).encode()
    with pytest.raises(layout.LayoutError, match=r"not a CNAB bundle\.json"):
        layout.config_blob_of(manifest)


def test_index_needs_a_pushed_invocation_image() -> None:
    doc = json.loads(_fixture("e2e.bundle.json"))
    del doc["invocationImages"][0]["contentDigest"]
    with pytest.raises(layout.LayoutError, match="contentDigest"):
        layout.build(doc)


def test_relocation_map_of_a_pulled_bundle() -> None:
    # cnab-to-oci's GenerateRelocationMap: every image bundle.json names -> the pulled
    # repository at the digest the index lists (components by their name annotation).
    doc = json.loads(_fixture("push_test.bundle.json"))
    index = _fixture("push_test.index.json")
    digests = {
        m["annotations"].get(
            "io.cnab.component.name", m["annotations"]["io.cnab.manifest.type"]
        ): m["digest"]
        for m in json.loads(index)["manifests"]
    }
    got = layout.relocation_map(index, doc, "localhost:5000/copy")
    assert got == {
        "my.registry/namespace/my-app-invoc": f"localhost:5000/copy@{digests['invocation']}",
        "my.registry/namespace/another-image": f"localhost:5000/copy@{digests['another-image']}",
        "my.registry/namespace/image-1": f"localhost:5000/copy@{digests['image-1']}",
    }
    # Docker Hub repositories are named as docker prints them.
    hub = layout.relocation_map(
        _fixture("e2e.index.json"), json.loads(_fixture("e2e.bundle.json")), "docker.io/library/app"
    )
    assert [v.partition("@")[0] for v in hub.values()] == ["app"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda m: m[1]["annotations"].clear(), "no io.cnab.manifest.type annotation"),
        (lambda m: m[1].update(mediaType="text/plain"), "unsupported media type"),
        (lambda m: m[2]["annotations"].update({"io.cnab.component.name": "nope"}), "'nope'"),
        (lambda m: m[1]["annotations"].update({"io.cnab.manifest.type": "odd"}), "unknown type"),
    ],
)
def test_relocation_map_of_an_index_that_does_not_fit_its_bundle(change, words: str) -> None:
    doc = json.loads(_fixture("push_test.bundle.json"))
    index = json.loads(_fixture("push_test.index.json"))
    change(index["manifests"])
    with pytest.raises(layout.LayoutError, match=re.escape(words)):
        layout.relocation_map(json.dumps(index).encode(), doc, "localhost:5000/copy")


def test_empty_lists_and_no_description_as_cnab_go_marshals_them() -> None:
    # cnab-go's Bundle: description is always written, keywords/maintainers/images... are
    # omitempty; cnab-to-oci annotates a list that is there (not nil) even when empty.
    raw = json.loads(_fixture("e2e.bundle.json"))
    raw.pop("description", None)
    doc = {
        **raw,
        "keywords": [],
        "maintainers": [],
        "images": {"db": {"imageType": "docker", "image": "db:1", "size": 0, "labels": {}}},
        "custom": {},
    }
    built = layout.build(doc)
    config = json.loads(built.config)
    assert config["description"] == ""
    assert not {"keywords", "maintainers", "custom"} & set(config)
    assert config["images"] == {"db": {"description": "", "image": "db:1", "imageType": "docker"}}
    assert b'"description":""' in built.config
    annotations = json.loads(built.index)["annotations"]
    assert annotations["io.cnab.keywords"] == "[]"
    assert annotations["org.opencontainers.image.authors"] == "[]"
    assert annotations["org.opencontainers.image.description"] == ""
    # Absent lists are nil in Go: no annotation at all.
    absent = layout.build({k: v for k, v in doc.items() if k not in ("keywords", "maintainers")})
    assert not {"io.cnab.keywords", "org.opencontainers.image.authors"} & set(
        json.loads(absent.index)["annotations"]
    )


def test_a_maintainer_keeps_its_name_even_when_empty() -> None:
    doc = {**json.loads(_fixture("e2e.bundle.json")), "maintainers": [{"name": "", "url": "u"}]}
    built = layout.build(doc)
    assert json.loads(built.config)["maintainers"] == [{"name": "", "url": "u"}]
    authors = json.loads(built.index)["annotations"]["org.opencontainers.image.authors"]
    assert authors == '[{"name":"","url":"u"}]'


def test_empty_member_fields_are_dropped_as_go_does() -> None:
    doc = {
        **json.loads(_fixture("e2e.bundle.json")),
        "parameters": {
            "p": {
                "definition": "d",
                "destination": {"env": "P", "path": ""},
                "required": False,
                "applyTo": [],
                "description": "",
            }
        },
        "credentials": {"c": {"env": "C", "path": "", "required": True}},
        "outputs": {"o": {"definition": "d", "path": "/cnab/app/outputs/o", "applyTo": []}},
        "actions": {"status": {"modifies": False, "stateless": True, "description": ""}},
        "definitions": {"d": {"type": "string", "enum": []}},
    }
    config = json.loads(layout.build(doc).config)
    assert config["parameters"] == {"p": {"definition": "d", "destination": {"env": "P"}}}
    assert config["credentials"] == {"c": {"env": "C", "required": True}}
    assert config["outputs"] == {"o": {"definition": "d", "path": "/cnab/app/outputs/o"}}
    assert config["actions"] == {"status": {"stateless": True}}
    assert config["definitions"] == {"d": {"type": "string", "enum": []}}  # kept as written
