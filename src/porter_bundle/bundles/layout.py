"""The cnab-to-oci layout of a bundle in an OCI registry (what ``porter publish`` pushes).

A tag names an OCI image index whose first entry is the *config manifest* (an OCI manifest
whose config blob is bundle.json itself, in RFC 8785 canonical form), then the invocation
image's manifest and the component images'. The bytes built here match cnab-to-oci v0.6.1
(the version Porter pins) exactly: Go's ``encoding/json`` output, keys in struct order,
maps sorted, ``<``, ``>`` and ``&`` escaped. On pull, the bytes are kept as they came: a
digest is always computed over what the registry sent, never over a re-serialisation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import rfc8785

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CNAB_CONFIG = "application/vnd.cnab.config.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
CNAB_ARTIFACT_TYPE = "application/vnd.cnab.manifest.v1"

INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (CNAB_CONFIG, OCI_IMAGE_CONFIG, DOCKER_IMAGE_CONFIG)
# What a manifest GET accepts: an index (the bundle), or a manifest (the config manifest).
MANIFEST_ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))

MANIFEST_TYPE_ANNOTATION = "io.cnab.manifest.type"
COMPONENT_NAME_ANNOTATION = "io.cnab.component.name"


class LayoutError(ValueError):
    """Registry content that is not a CNAB bundle in the cnab-to-oci layout."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``<algorithm>:<hex>`` of bytes (sha256 or sha512)."""
    if algorithm not in ("sha256", "sha512"):
        raise LayoutError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def matches(data: bytes, digest: str) -> bool:
    """Whether ``data`` has ``digest`` (``sha256:...`` or ``sha512:...``)."""
    algorithm, _, _ = digest.partition(":")
    try:
        return digest_of(data, algorithm) == digest
    except LayoutError:
        return False


def go_json(value: Any) -> bytes:
    """Compact JSON as Go's ``encoding/json`` writes it (HTML-safe escapes, UTF-8 kept)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()


def canonical_bundle_json(doc: dict[str, Any]) -> bytes:
    """bundle.json in RFC 8785 canonical form: the config blob cnab-to-oci pushes."""
    return rfc8785.dumps(go_bundle(doc))


# cnab-go's Bundle struct: fields always written, and ``omitempty`` ones (dropped when empty).
_BUNDLE_ALWAYS = {"schemaVersion": "", "name": "", "version": "", "description": ""}
_BUNDLE_OMITEMPTY = (
    "keywords",
    "maintainers",
    "images",
    "actions",
    "parameters",
    "credentials",
    "outputs",
    "definitions",
    "license",
    "requiredExtensions",
    "custom",
)
_IMAGE_OMITEMPTY = ("contentDigest", "size", "labels", "mediaType")


def _empty(value: Any) -> bool:
    """What Go's ``omitempty`` leaves out: null, "", 0, false, an empty list or map."""
    return value is None or value == "" or value == 0 or value == [] or value == {}


def _base_image(image: Any, **always: Any) -> Any:
    if not isinstance(image, dict):
        return image
    out = {"imageType": image.get("imageType") or "", "image": image.get("image") or "", **always}
    for key in _IMAGE_OMITEMPTY:  # anything else is no field of cnab-go's: Go drops it
        if not _empty(image.get(key)):
            out[key] = image[key]
    return out


def go_bundle(doc: dict[str, Any]) -> dict[str, Any]:
    """bundle.json as cnab-go marshals its Bundle (what cnab-to-oci pushes): ``description``
    always present, empty ``omitempty`` fields (``keywords: []``, ``images: {}``, ...) left out,
    maintainers with their ``name``, images with ``imageType`` and ``image`` (component images
    with their ``description``), parameters, credentials, outputs and actions without their
    empty omitempty fields (``required: false``, ``applyTo: []``, ...). Definitions (JSON
    schemas) are kept as written."""
    out: dict[str, Any] = {k: doc.get(k) or default for k, default in _BUNDLE_ALWAYS.items()}
    out["invocationImages"] = [_base_image(i) for i in doc.get("invocationImages") or []]
    for key in _BUNDLE_OMITEMPTY:
        if not _empty(doc.get(key)):
            out[key] = doc[key]
    if "maintainers" in out:
        out["maintainers"] = [_maintainer(m) for m in out["maintainers"]]
    for key, omitempty in _MEMBER_OMITEMPTY.items():
        if isinstance(out.get(key), dict):
            out[key] = {name: _omit(m, omitempty) for name, m in out[key].items()}
    for p in (out.get("parameters") or {}).values():
        if isinstance(p, dict) and isinstance(p.get("destination"), dict):
            p["destination"] = _omit(p["destination"], ("path", "env"))
    if "images" in out and isinstance(out["images"], dict):
        out["images"] = {
            name: _base_image(
                image, description=image.get("description") or "" if isinstance(image, dict) else ""
            )
            for name, image in out["images"].items()
        }
    return out


# cnab-go's Parameter, Credential (with its Location), Output and Action: omitempty fields.
_MEMBER_OMITEMPTY = {
    "parameters": ("applyTo", "description", "required"),
    "credentials": ("path", "env", "description", "required", "applyTo"),
    "outputs": ("applyTo", "description"),
    "actions": ("modifies", "stateless", "description"),
}


def _omit(member: Any, omitempty: tuple[str, ...]) -> Any:
    """A copy of ``member`` without its empty ``omitempty`` fields (``false`` included)."""
    if not isinstance(member, dict):
        return member
    return {k: v for k, v in member.items() if not (k in omitempty and (_empty(v) or v is False))}


def _maintainer(m: Any) -> Any:
    """cnab-go's Maintainer: ``name`` always, ``email`` and ``url`` when not empty."""
    if not isinstance(m, dict):
        return m
    return {"name": m.get("name") or "", **{k: m[k] for k in ("email", "url") if m.get(k)}}


def config_manifest(config: bytes) -> bytes:
    """The OCI manifest whose config blob is bundle.json (``"layers": null``, as Go writes it)."""
    return go_json(
        {
            "schemaVersion": 2,
            "config": {"mediaType": CNAB_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": None,
        }
    )


def _descriptor(media_type: str, digest: str, size: int, annotations: dict[str, str]) -> Any:
    return {"mediaType": media_type, "digest": digest, "size": size, "annotations": annotations}


def _annotations(doc: dict[str, Any]) -> dict[str, str]:
    out = {
        "io.cnab.runtime_version": str(doc.get("schemaVersion", "")),
        "org.opencontainers.image.title": str(doc.get("name", "")),
        "org.opencontainers.image.version": str(doc.get("version", "")),
        "org.opencontainers.image.description": str(doc.get("description", "")),
        "org.opencontainers.artifactType": CNAB_ARTIFACT_TYPE,
    }
    # cnab-to-oci writes these whenever the list is there (not nil), "[]" when it is empty.
    maintainers = doc.get("maintainers")
    if isinstance(maintainers, list):
        out["org.opencontainers.image.authors"] = go_json(
            [_maintainer(m) for m in maintainers]
        ).decode()
    keywords = doc.get("keywords")
    if isinstance(keywords, list):
        out["io.cnab.keywords"] = go_json(list(keywords)).decode()
    return dict(sorted(out.items()))


def bundle_index(doc: dict[str, Any], config_manifest_bytes: bytes) -> bytes:
    """The OCI index a bundle's tag points at (``mediaType`` omitted, as cnab-to-oci does)."""
    images = doc.get("invocationImages") or []
    if not images or not isinstance(images[0], dict):
        raise LayoutError("bundle.json has no invocation image")
    invocation = images[0]
    if not invocation.get("contentDigest") or not invocation.get("size"):
        raise LayoutError(
            "the invocation image needs contentDigest and size (push it to the bundle's "
            "repository first)"
        )
    manifests = [
        _descriptor(
            OCI_MANIFEST,
            digest_of(config_manifest_bytes),
            len(config_manifest_bytes),
            {MANIFEST_TYPE_ANNOTATION: "config"},
        ),
        _descriptor(
            str(invocation.get("mediaType") or OCI_MANIFEST),
            str(invocation["contentDigest"]),
            int(invocation["size"]),
            {MANIFEST_TYPE_ANNOTATION: "invocation"},
        ),
    ]
    for name, image in sorted((doc.get("images") or {}).items()):
        manifests.append(
            _descriptor(
                str(image.get("mediaType") or OCI_MANIFEST),
                str(image.get("contentDigest", "")),
                int(image.get("size", 0)),
                {COMPONENT_NAME_ANNOTATION: name, MANIFEST_TYPE_ANNOTATION: "component"},
            )
        )
    return go_json({"schemaVersion": 2, "manifests": manifests, "annotations": _annotations(doc)})


@dataclass(frozen=True)
class Layout:
    """Everything a publish pushes, beyond the invocation image: exact bytes."""

    config: bytes
    """bundle.json, canonical."""
    config_manifest: bytes
    index: bytes

    @property
    def digest(self) -> str:
        """The bundle digest Porter records: the index's."""
        return digest_of(self.index)


def build(doc: dict[str, Any]) -> Layout:
    """The cnab-to-oci layout of a bundle.json document."""
    config = canonical_bundle_json(doc)
    manifest = config_manifest(config)
    return Layout(config, manifest, bundle_index(doc, manifest))


# --- pull -------------------------------------------------------------------------------


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise LayoutError(f"the {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise LayoutError(f"the {what} is not a JSON object")
    return doc


def _parse_descriptor(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise LayoutError(f"the {what} is not a descriptor")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(digest, str) or not digest.startswith(("sha256:", "sha512:")):
        raise LayoutError(f"the {what} has no valid digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"the {what} has no valid size")
    return Descriptor(media_type if isinstance(media_type, str) else "", digest, size)


def config_manifest_of(index: bytes, media_type: str = "") -> Descriptor:
    """The config manifest's descriptor in a bundle index; LayoutError when it is no bundle."""
    doc = _load(index, "manifest")
    declared = doc.get("mediaType") or media_type
    if declared and declared not in INDEX_TYPES:
        raise LayoutError(f"the reference names a {declared}, not a CNAB bundle (an image index)")
    manifests = doc.get("manifests")
    if doc.get("schemaVersion") != 2 or not isinstance(manifests, list):
        raise LayoutError("the reference names no image index, so no CNAB bundle")
    for entry in manifests:
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        if isinstance(annotations, dict) and annotations.get(MANIFEST_TYPE_ANNOTATION) == "config":
            return _parse_descriptor(entry, "bundle's config manifest entry")
    raise LayoutError(
        f"the image index has no entry annotated {MANIFEST_TYPE_ANNOTATION}=config: "
        "not a CNAB bundle"
    )


def config_blob_of(manifest: bytes) -> Descriptor:
    """The config blob's descriptor (bundle.json) in the config manifest."""
    doc = _load(manifest, "config manifest")
    config = _parse_descriptor(doc.get("config"), "config manifest's config")
    if config.media_type not in CONFIG_TYPES:
        raise LayoutError(
            f"the config manifest's config is a {config.media_type or 'blob of no type'}, "
            "not a CNAB bundle.json"
        )
    return config


def relocation_map(index: bytes, doc: dict[str, Any], repository: str) -> dict[str, str]:
    """cnab-to-oci's relocation map of a pulled bundle: every image bundle.json names -> that
    image in ``repository`` by the digest the index lists (``GenerateRelocationMap``)."""
    entries = _load(index, "manifest").get("manifests")
    if not isinstance(entries, list):
        raise LayoutError("the reference names no image index, so no CNAB bundle")
    invocation = doc.get("invocationImages") or []
    components = doc.get("images") or {}
    out: dict[str, str] = {}
    for entry in entries:
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        kind = annotations.get(MANIFEST_TYPE_ANNOTATION) if isinstance(annotations, dict) else None
        if kind is None:
            raise LayoutError(f"an image index entry has no {MANIFEST_TYPE_ANNOTATION} annotation")
        if kind == "config":
            continue
        found = _parse_descriptor(entry, f"{kind} image entry")
        if found.media_type not in (*INDEX_TYPES, *MANIFEST_TYPES):
            raise LayoutError(
                f"the image index lists {found.digest} with unsupported media type "
                f"{found.media_type!r}"
            )
        relocated = f"{familiar(repository)}@{found.digest}"
        assert isinstance(annotations, dict)
        if kind == "invocation":
            if not invocation or not isinstance(invocation[0], dict):
                raise LayoutError(
                    f"the image index lists an unknown invocation image {found.digest}"
                )
            out[str(invocation[0].get("image", ""))] = relocated
        elif kind == "component":
            name = annotations.get(COMPONENT_NAME_ANNOTATION)
            image = components.get(name) if isinstance(name, str) else None
            if not isinstance(image, dict):
                raise LayoutError(f"the image index lists component {name!r}, not in bundle.json")
            out[str(image.get("image", ""))] = relocated
        else:
            raise LayoutError(f"the image index has an entry of unknown type {kind!r}")
    return out


def familiar(repository: str) -> str:
    """A repository as docker prints it: Docker Hub's host and ``library/`` left out."""
    for hub in ("docker.io/", "index.docker.io/"):
        if repository.startswith(hub):
            repository = repository[len(hub) :]
            rest = repository.removeprefix("library/")
            return rest if "/" not in rest else repository
    return repository
