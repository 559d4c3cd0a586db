"""Syntax rules for names, labels and bundle references, shared by every resource.

Each check appends to a :class:`~porter_bundle.errors.Violations` so a request's
problems are reported together, each with the path of its field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from porter_bundle.errors import InvalidArgument, Violations, quote

MAX_NAME_LENGTH = 253
MAX_NAMESPACE_LENGTH = 63
MAX_LABELS = 64
MAX_LABEL_VALUE_LENGTH = 256
MAX_SET_REFERENCES = 64
MAX_SET_ENTRIES = 256
MAX_VALUE_BYTES = 64 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_BUNDLE_JSON_BYTES = 4 * 1024 * 1024

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# OCI distribution reference grammar (distribution/reference), without IPv6 hosts.
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"(?:{_HOST}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
# A bundle version as Porter parses it (Masterminds/semver's NewVersion): minor and patch may
# be left out ("0.3" is 0.3.0), a leading "v" is allowed, build metadata after "+".
_PRERELEASE_ID = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_VERSION = re.compile(
    r"v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    rf"(?:-({_PRERELEASE_ID}(?:\.{_PRERELEASE_ID})*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
MAX_REPOSITORY_LENGTH = 255


def check_name(v: Violations, field: str, value: str, *, what: str = "name") -> None:
    """A resource name: required, letters/digits/``._-``, alphanumeric at both ends."""
    if not value:
        v.add(field, f"{what} is required")
    elif len(value) > MAX_NAME_LENGTH:
        v.add(field, f"{what} is longer than {MAX_NAME_LENGTH} characters")
    elif not _NAME.fullmatch(value):
        v.add(
            field,
            f"{what} may contain only letters, digits, '.', '_' and '-', "
            "and must start and end with a letter or digit",
        )


def check_namespace(v: Violations, field: str, value: str) -> None:
    """A namespace: "" (global) or a name of at most 63 characters."""
    if value == "":
        return
    if len(value) > MAX_NAMESPACE_LENGTH:
        v.add(field, f"namespace is longer than {MAX_NAMESPACE_LENGTH} characters")
    elif not _NAME.fullmatch(value):
        v.add(
            field,
            "namespace may contain only letters, digits, '.', '_' and '-', "
            "and must start and end with a letter or digit",
        )


def check_address(namespace: str, name: str, *, prefix: str = "") -> None:
    """Raises INVALID_ARGUMENT unless (namespace, name) is a well-formed resource address."""
    v = Violations()
    check_namespace(v, f"{prefix}namespace", namespace)
    check_name(v, f"{prefix}name", name)
    v.raise_if_any()


def check_labels(v: Violations, field: str, labels: Mapping[str, str]) -> None:
    """Label keys follow Kubernetes' rules (``[prefix/]name``); values are bounded."""
    if len(labels) > MAX_LABELS:
        v.add(field, f"at most {MAX_LABELS} labels are allowed")
    for key, value in labels.items():
        path = f"{field}[{quote(key)!r}]"
        prefix, sep, name = key.rpartition("/")
        if not key:
            v.add(path, "label key must not be empty")
        elif sep and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
            v.add(path, "label key prefix must be a lowercase DNS subdomain")
        elif not _LABEL_NAME.fullmatch(name):
            v.add(
                path,
                "label key name must be 1-63 letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit",
            )
        if len(value) > MAX_LABEL_VALUE_LENGTH:
            v.add(path, f"label value is longer than {MAX_LABEL_VALUE_LENGTH} characters")


def check_set_names(v: Violations, field: str, names: Iterable[str]) -> None:
    """A list of credential/parameter set names: valid names, no duplicates, bounded."""
    seen: set[str] = set()
    items = list(names)
    if len(items) > MAX_SET_REFERENCES:
        v.add(field, f"at most {MAX_SET_REFERENCES} sets are allowed")
    for i, name in enumerate(items):
        check_name(v, f"{field}[{i}]", name, what="set name")
        if name in seen:
            v.add(f"{field}[{i}]", f"set {name!r} is listed twice")
        seen.add(name)


def check_env_name(v: Violations, field: str, value: str) -> None:
    """An environment variable name."""
    if not _ENV_NAME.fullmatch(value):
        v.add(field, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class BundleRef:
    """An installation's bundle reference after validation."""

    repository: str
    digest: str = ""
    version: str = ""
    tag: str = ""

    @property
    def effective_tag(self) -> str:
        """The tag the reference resolves through when no digest pins it (the version's tag
        wins over ``tag``)."""
        if self.version:
            return version_tag(self.version) or self.version
        return self.tag

    def __str__(self) -> str:
        """The reference as Porter prints it: digest over version over tag."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.effective_tag}"


def check_repository(v: Violations, field: str, repository: str) -> None:
    """An OCI repository such as ``ghcr.io/getporter/porter-hello``."""
    if not repository:
        v.add(field, "repository is required")
    elif len(repository) > MAX_REPOSITORY_LENGTH:
        v.add(field, f"repository is longer than {MAX_REPOSITORY_LENGTH} characters")
    elif not _REPOSITORY.fullmatch(repository):
        v.add(field, f"{repository!r} is not a valid OCI repository (e.g. example.com/team/app)")


def check_digest(v: Violations, field: str, digest: str) -> None:
    """A content digest such as ``sha256:<64 hex>``."""
    if not _DIGEST.fullmatch(digest):
        v.add(field, "digest must look like sha256:<64 lowercase hex digits>")


def check_tag(v: Violations, field: str, tag: str) -> None:
    """An OCI tag."""
    if not _TAG.fullmatch(tag):
        v.add(
            field,
            "tag must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
        )


def version_tag(version: str) -> str:
    """The tag Porter pulls for a bundle version ("" when it is no version): "v" + the
    version completed to MAJOR.MINOR.PATCH, its "+" written "_" (tags have no "+"), e.g.
    ``0.3`` -> ``v0.3.0``, ``0.4.0+build.7`` -> ``v0.4.0_build.7``."""
    m = _VERSION.fullmatch(version)
    if m is None:
        return ""
    major, minor, patch, pre, meta = m.groups()
    text = f"{int(major)}.{int(minor or 0)}.{int(patch or 0)}"
    text += f"-{pre}" if pre else ""
    text += f"_{meta}" if meta else ""
    return f"v{text}"


def check_bundle_ref(v: Violations, field: str, ref: BundleRef) -> None:
    """A repository plus at least one of digest, version, tag (digest > version > tag)."""
    check_repository(v, f"{field}.repository", ref.repository)
    if not (ref.digest or ref.version or ref.tag):
        v.add(field, "one of digest, version or tag is required")
    if ref.digest:
        check_digest(v, f"{field}.digest", ref.digest)
    if ref.version and not version_tag(ref.version):
        v.add(f"{field}.version", "version must be a semantic version such as 1.2.3 or v1.2.3")
    elif ref.version:
        check_tag(v, f"{field}.version", version_tag(ref.version))
    if ref.tag:
        check_tag(v, f"{field}.tag", ref.tag)


@dataclass(frozen=True)
class ParsedReference:
    """A full reference string split into repository and tag or digest (both for
    ``repo:tag@digest``, whose digest wins: it prints as ``repo@digest``)."""

    repository: str
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


def parse_reference(text: str, field: str = "reference") -> ParsedReference:
    """Parses ``repo:tag`` or ``repo@sha256:...``; INVALID_ARGUMENT when malformed or incomplete."""
    v = Violations()
    if not text:
        v.add(field, "reference is required")
        v.raise_if_any()
    repository, tag, digest = text, "", ""
    if "@" in text:
        # repo@digest, or repo:tag@digest as Porter takes it: the digest wins.
        repository, _, digest = text.partition("@")
        check_digest(v, field, digest)
        head, sep, tail = repository.rpartition(":")
        if sep and "/" not in tail:
            repository, tag = head, tail
            check_tag(v, field, tag)
    else:
        head, sep, tail = text.rpartition(":")
        if sep and "/" not in tail:
            repository, tag = head, tail
            check_tag(v, field, tag)
        else:
            v.add(field, "reference needs a tag or digest, e.g. example.com/app:v1.0.0")
    check_repository(v, field, repository)
    v.raise_if_any()
    return ParsedReference(repository, tag, digest)


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (JSON's ``"\\ud800"``, YAML's too): text that
    is not Unicode, which no UTF-8 encoder (database, protobuf, JSON client) accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unsafe_data(value: Any) -> tuple[str, str] | None:
    """The first place in parsed JSON or YAML data that breaks later, as (path, problem): a
    string or key with a lone surrogate, a number that is not finite (NaN, Infinity). The path
    is relative (``.a.b[0]``, "" for the root). Iterative: no recursion limit."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if has_lone_surrogate(node):
                return path, "text must be Unicode (a lone surrogate such as \\ud800 is not)"
        elif isinstance(node, float):
            if not math.isfinite(node):
                return path, "numbers must be finite (not NaN or Infinity)"
        elif isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and has_lone_surrogate(key):
                    return path, "keys must be Unicode (a lone surrogate such as \\ud800 is not)"
                stack.append((child, f"{path}.{key}"))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
    return None


def require(condition: bool, field: str, description: str) -> None:
    """Raises INVALID_ARGUMENT for one field unless ``condition`` holds."""
    if not condition:
        v = Violations()
        v.add(field, description)
        raise InvalidArgument.from_violations(v.items)
