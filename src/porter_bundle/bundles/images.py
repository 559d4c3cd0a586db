"""Which invocation image a run executes: the one the bundle pins, never whatever a tag names now.

As Porter does (cnab-go's driver and Porter's ``AddRelocation``): a pulled bundle's image is
taken from its relocation map (the repository it was pulled from, by the index's digest);
otherwise an image with a ``contentDigest`` runs as ``<repository>@<contentDigest>``. Digests
that contradict each other (bundle.json's ``contentDigest``, a digest in the image reference,
the image index's descriptor) refuse the run before it is recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from porter_bundle.errors import FailedPrecondition

RELOCATION_MAPPING_PATH = "/cnab/app/relocation-mapping.json"
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


@dataclass(frozen=True)
class ImageName:
    """An image reference split into its repository, tag and digest (each possibly "")."""

    repository: str
    tag: str = ""
    digest: str = ""


def split_image(image: str) -> ImageName:
    """``repo``, ``repo:tag``, ``repo@digest`` or ``repo:tag@digest`` -> its parts."""
    name, _, digest = image.partition("@")
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:
        return ImageName(head, tail, digest)
    return ImageName(name, "", digest)


@dataclass(frozen=True)
class PinnedImage:
    """The invocation image a run executes."""

    reference: str
    """What the engine is asked to run, by digest whenever one is known."""
    digest: str
    """The manifest digest the image must have ("" when the bundle pins none)."""
    relocation_map: Mapping[str, str] = field(default_factory=dict)
    """The bundle's relocation map, given to the container when not empty."""

    def mapping_file(self) -> dict[str, bytes]:
        """``/cnab/app/relocation-mapping.json`` as Porter writes it (indented, keys sorted),
        or nothing when no image was relocated."""
        if not self.relocation_map:
            return {}
        text = json.dumps(dict(sorted(self.relocation_map.items())), indent=4)
        return {RELOCATION_MAPPING_PATH: text.encode()}


def pin_invocation_image(
    doc: Mapping[str, Any], relocation_map: Mapping[str, str] | None = None
) -> PinnedImage:
    """The invocation image of ``doc`` to run; FAILED_PRECONDITION when its digests disagree."""
    images = doc.get("invocationImages") or []
    first = images[0] if images and isinstance(images[0], dict) else {}
    image = str(first.get("image", ""))
    content = str(first.get("contentDigest") or "")
    relocations = dict(relocation_map or {})
    named = split_image(image)
    if content and not _DIGEST.fullmatch(content):
        raise _mismatch(image, f"its contentDigest {content!r} is not a sha256 or sha512 digest")
    if named.digest and content and named.digest != content:
        raise _mismatch(
            image, f"the reference names digest {named.digest}, its contentDigest is {content}"
        )
    relocated = relocations.get(image, "")
    if relocated:
        where = split_image(relocated)
        pinned = content or named.digest
        if pinned and where.digest != pinned:
            raise _mismatch(
                image,
                f"bundle.json pins {pinned}, but the bundle's image index lists {relocated}",
            )
        return PinnedImage(relocated, where.digest, relocations)
    digest = content or named.digest
    reference = f"{named.repository}@{digest}" if digest else image
    return PinnedImage(reference, digest, relocations)


def _mismatch(image: str, detail: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the invocation image {image} does not match the digest the bundle pins: {detail}; "
        "republish the bundle",
        reason="IMAGE_DIGEST_MISMATCH",
        metadata={"image": image},
    )


__all__ = [
    "RELOCATION_MAPPING_PATH",
    "ImageName",
    "PinnedImage",
    "pin_invocation_image",
    "split_image",
]
