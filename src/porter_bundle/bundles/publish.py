"""Publishing a bundle.json to an OCI registry in the cnab-to-oci layout (as ``porter publish``).

The invocation image must already be in the bundle's repository (e.g. ``podman push`` it
there): the index lists its manifest, which the registry checks exists. bundle.json is
completed with that manifest's digest, size and media type, its image pointed at the
repository by digest; component images (``images``) are resolved where bundle.json names them
and completed likewise (their ``image`` kept as written, as cnab-to-oci's fixup does), one in
another repository of the same registry mounted into the bundle's. Then the config blob, the
config manifest and the index are pushed. A failure about an image names it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from porter_bundle.bundles import layout
from porter_bundle.bundles.cnab import parse_bundle
from porter_bundle.bundles.images import split_image
from porter_bundle.bundles.registry import (
    RegistryBadContent,
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryRefused,
    registry_error,
)
from porter_bundle.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PorterBundleError,
)
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
    _complete_component_images(client, doc, ref.repository)
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


def _complete_component_images(
    client: RegistryClient, doc: dict[str, Any], repository: str
) -> None:
    """Resolves each component image (``images``) where bundle.json names it, as cnab-to-oci's
    fixup does: its digest, size and media type are recorded (``image`` stays as written) and
    an image of another repository on the same registry is mounted into ``repository``, so
    the index can list it. A failure names the image."""
    images = doc.get("images") or {}
    completed: dict[str, Any] = {}
    for name, image in sorted(images.items()):
        if not isinstance(image, dict):
            completed[name] = image
            continue
        reference = str(image.get("image", ""))
        named = split_image(reference)
        try:
            found = client.manifest_descriptor(
                named.repository, named.digest or named.tag or "latest"
            )
            if named.repository != repository:
                client.mount_image(named.repository, found, repository)
        except RegistryError as exc:
            raise _image_error(exc, f"component image {name!r} ({reference})", reference) from None
        completed[name] = {
            **image,
            "contentDigest": found.digest,
            "size": found.size,
            "mediaType": found.media_type or layout.OCI_MANIFEST,
        }
    if completed:
        doc["images"] = completed


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
    try:
        found = client.manifest_descriptor(repository, tag_or_digest)
    except RegistryError as exc:
        raise _image_error(exc, f"the invocation image {image}", image) from None
    images[0].update(
        image=f"{repository}@{found.digest}",
        contentDigest=found.digest,
        size=found.size,
        mediaType=found.media_type or layout.OCI_MANIFEST,
    )
    doc["invocationImages"] = images
    # Keep it a valid bundle after the change (and identical to what a pull validates).
    parse_bundle(json.dumps(doc).encode())


def _image_error(exc: RegistryError, what: str, image: str) -> PorterBundleError:
    """A registry failure about one of the bundle's images, naming it: an image that is not
    there (or not usable) is a precondition of publishing; the registry's own state (down,
    refusing the credentials) keeps the status :func:`registry_error` gives it."""
    if isinstance(exc, RegistryNotFound | RegistryRefused | RegistryBadContent):
        return FailedPrecondition(
            f"{what}: registry {exc.host}: {exc.message}",
            reason="NOT_PUBLISHABLE",
            metadata={"image": image, "registry": exc.host},
        )
    return registry_error(type(exc)(exc.host, f"{what}: {exc.message}", exc.status), image)
