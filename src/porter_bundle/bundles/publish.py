"""Publishing a bundle.json to an OCI registry in the cnab-to-oci layout (as ``porter publish``).

The invocation image must already be in the bundle's repository (e.g. ``podman push`` it
there): the index lists its manifest, which the registry checks exists. bundle.json is
completed with that manifest's digest, size and media type, its image pointed at the
repository by digest, then the config blob, the config manifest and the index are pushed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from porter_bundle.bundles import layout
from porter_bundle.bundles.cnab import parse_bundle
from porter_bundle.bundles.images import split_image
from porter_bundle.bundles.registry import RegistryClient, RegistryError, registry_error
from porter_bundle.errors import FailedPrecondition, FieldViolation, InvalidArgument
from porter_bundle.validation import parse_reference


@dataclass(frozen=True)
class Published:
    """What a publish pushed."""

    reference: str
    digest: str
    """The bundle digest (the index's): what runs record."""
    bundle_json: bytes
    """bundle.json as pushed (canonical, the invocation image completed)."""


def publish(client: RegistryClient, bundle_json: bytes, reference: str) -> Published:
    """Pushes ``bundle_json`` under ``reference`` (``repo:tag``); domain errors on failure."""
    ref = parse_reference(reference)
    if not ref.tag or ref.digest:
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    "reference", "publish needs a tag and no digest, e.g. example.com/app:v1.0.0"
                )
            ]
        )
    doc = dict(parse_bundle(bundle_json).doc)
    try:
        _complete_invocation_image(client, doc, ref.repository)
        built = layout.build(doc)
        digest = push_layout(client, ref.repository, ref.tag, built)
    except RegistryError as exc:
        raise registry_error(exc, reference) from None
    except layout.LayoutError as exc:
        raise FailedPrecondition(str(exc), reason="NOT_PUBLISHABLE") from None
    return Published(str(ref), digest, built.config)


def push_layout(client: RegistryClient, repository: str, tag: str, built: layout.Layout) -> str:
    """Pushes a built layout (config blob, config manifest, then the index under ``tag``);
    returns the bundle digest. The images the index lists must be in ``repository``."""
    client.push_blob(repository, built.config)
    config_digest = layout.digest_of(built.config_manifest)
    client.push_manifest(repository, config_digest, built.config_manifest, layout.OCI_MANIFEST)
    return client.push_manifest(repository, tag, built.index, layout.OCI_INDEX)


def _complete_invocation_image(
    client: RegistryClient, doc: dict[str, Any], repository: str
) -> None:
    """Reads the invocation image's manifest in ``repository`` and records it in bundle.json."""
    images = [dict(i) for i in doc.get("invocationImages") or []]
    if not images:
        raise FailedPrecondition("bundle.json has no invocation image", reason="NOT_PUBLISHABLE")
    image = str(images[0].get("image", ""))
    named = split_image(image)
    name, tag_or_digest = named.repository, named.digest or named.tag or "latest"
    if name != repository:
        raise FailedPrecondition(
            f"the invocation image {image} must be pushed to the bundle's repository "
            f"{repository} first (e.g. podman push IMAGE {repository}:TAG, then name that in "
            "bundle.json)",
            reason="NOT_PUBLISHABLE",
        )
    found = client.manifest_descriptor(repository, tag_or_digest)
    images[0].update(
        image=f"{repository}@{found.digest}",
        contentDigest=found.digest,
        size=found.size,
        mediaType=found.media_type or layout.OCI_MANIFEST,
    )
    doc["invocationImages"] = images
    # Keep it a valid bundle after the change (and identical to what a pull validates).
    parse_bundle(json.dumps(doc).encode())
