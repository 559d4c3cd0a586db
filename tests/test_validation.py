"""Bundle references and versions as Porter reads them."""

from __future__ import annotations

import pytest

from porter_bundle.errors import InvalidArgument
from porter_bundle.validation import BundleRef, ParsedReference, parse_reference, version_tag

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("version", "tag"),
    [
        ("1.2.3", "v1.2.3"),
        ("v1.2.3", "v1.2.3"),
        ("0.3", "v0.3.0"),
        ("1", "v1.0.0"),
        ("0.4.0+build.7", "v0.4.0_build.7"),
        ("1.2.3-rc.1+build.5", "v1.2.3-rc.1_build.5"),
        ("2.0-beta", "v2.0.0-beta"),
    ],
)
def test_version_tag_as_porter_computes_it(version: str, tag: str) -> None:
    assert version_tag(version) == tag
    assert BundleRef("example.com/app", version=version).effective_tag == tag


@pytest.mark.parametrize("version", ["", "1.x", "01.2.3", "1.2.3.4", "1.2.3-01", "1.0+", "V1"])
def test_not_a_version(version: str) -> None:
    assert version_tag(version) == ""


def test_a_tag_and_a_digest() -> None:
    ref = parse_reference(f"example.com:5000/team/app:v1@{DIGEST}")
    assert ref == ParsedReference("example.com:5000/team/app", "v1", DIGEST)
    assert str(ref) == f"example.com:5000/team/app@{DIGEST}"
    assert parse_reference(f"example.com:5000/app@{DIGEST}").tag == ""
    with pytest.raises(InvalidArgument):
        parse_reference(f"example.com/app:.bad@{DIGEST}")
