"""Which invocation image a run executes (the pinning rules; a real run in tests/e2e)."""

from __future__ import annotations

import json

import pytest

from porter_bundle.bundles.images import (
    RELOCATION_MAPPING_PATH,
    ImageName,
    pin_invocation_image,
    split_image,
)
from porter_bundle.errors import FailedPrecondition

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def doc(image: str, content: str = "") -> dict[str, object]:
    entry = {"imageType": "docker", "image": image}
    if content:
        entry["contentDigest"] = content
    return {"invocationImages": [entry]}


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("localhost:5000/app", ImageName("localhost:5000/app")),
        ("localhost:5000/app:v1", ImageName("localhost:5000/app", "v1")),
        (f"localhost:5000/app@{A}", ImageName("localhost:5000/app", "", A)),
        (f"localhost:5000/app:v1@{A}", ImageName("localhost:5000/app", "v1", A)),
    ],
)
def test_split_image(image: str, parts: ImageName) -> None:
    assert split_image(image) == parts


def test_an_unpinned_image_runs_as_named() -> None:
    pinned = pin_invocation_image(doc("localhost/app:v1"))
    assert (pinned.reference, pinned.digest, pinned.mapping_file()) == ("localhost/app:v1", "", {})


def test_the_content_digest_replaces_the_tag() -> None:
    pinned = pin_invocation_image(doc("example.com/app:v1", A))
    assert (pinned.reference, pinned.digest) == (f"example.com/app@{A}", A)
    assert pin_invocation_image(doc(f"example.com/app:v1@{A}")).reference == f"example.com/app@{A}"


def test_the_relocation_map_wins_and_is_handed_over() -> None:
    relocations = {
        "example.invalid/app:v1": f"localhost:5000/copy@{A}",
        "db:1": f"localhost:5000/copy@{B}",
    }
    pinned = pin_invocation_image(doc("example.invalid/app:v1", A), relocations)
    assert (pinned.reference, pinned.digest) == (f"localhost:5000/copy@{A}", A)
    text = pinned.mapping_file()[RELOCATION_MAPPING_PATH].decode()
    assert json.loads(text) == relocations
    assert text == json.dumps(dict(sorted(relocations.items())), indent=4)
    # Without a contentDigest, the index's digest is the one pinned.
    assert pin_invocation_image(doc("example.invalid/app:v1"), relocations).digest == A


@pytest.mark.parametrize(
    ("bundle", "relocations"),
    [
        (doc(f"example.com/app@{A}", B), {}),
        (doc("example.com/app:v1", B), {"example.com/app:v1": f"localhost:5000/copy@{A}"}),
        (doc(f"example.com/app@{B}"), {f"example.com/app@{B}": f"localhost:5000/copy@{A}"}),
        (doc("example.com/app:v1", "md5:abc"), {}),
    ],
)
def test_digests_that_disagree_refuse_the_run(bundle, relocations) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        pin_invocation_image(bundle, relocations)
    assert caught.value.reason == "IMAGE_DIGEST_MISMATCH"
    assert "example.com/app" in caught.value.message
