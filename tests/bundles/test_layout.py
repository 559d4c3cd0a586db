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
