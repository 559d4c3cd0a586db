"""A small OCI distribution client: pulls and pushes bundles in the cnab-to-oci layout.

Blocking (httpx's sync client): the service layer calls it from worker threads, never on
the event loop. Every failure is one of the :class:`RegistryError` classes (in
:mod:`~porter_bundle.bundles.registry_errors`, re-exported here), turned into a domain error
by :func:`registry_error` and nowhere else. Messages name the registry host and repeat the
registry's own words; they never contain a credential or token.

Over 400 lines for a reason: one client class, whose pulls, pushes and image mounts share its
connection pool, token cache and the one request path with the auth dance.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from porter_bundle.bundles import layout
from porter_bundle.bundles.registry_errors import (
    RegistryBadContent,
    RegistryError,
    RegistryForbidden,
    RegistryNotFound,
    RegistryRefused,
    RegistryUnauthorized,
    RegistryUnreachable,
    describe_http_error,
    error_kind,
    raise_for,
    read_body,
    registry_error,
)
from porter_bundle.validation import MAX_BUNDLE_JSON_BYTES

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TOKEN_BYTES = 256 * 1024
MAX_REDIRECTS = 5
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

__all__ = [
    "DOCKER_HUB",
    "PulledBundle",
    "RegistryBadContent",
    "RegistryClient",
    "RegistryError",
    "RegistryForbidden",
    "RegistryNotFound",
    "RegistryRefused",
    "RegistryUnauthorized",
    "RegistryUnreachable",
    "Repository",
    "error_kind",
    "registry_error",
]


# --- references -------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """A repository split into the registry host and the name on it."""

    host: str
    """As the reference names it (``docker.io`` for Docker Hub)."""
    name: str

    @classmethod
    def parse(cls, repository: str) -> Repository:
        """``ghcr.io/a/b`` -> (ghcr.io, a/b); ``library`` names go to Docker Hub as docker does."""
        first, sep, rest = repository.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest)
        if not sep:
            return cls(DOCKER_HUB, f"library/{repository}")
        return cls(DOCKER_HUB, repository)

    @property
    def api_host(self) -> str:
        """Where the registry API is served."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host


# --- the client -----------------------------------------------------------------------


@dataclass(frozen=True)
class PulledBundle:
    """A bundle as pulled: the index digest (the bundle digest) and bundle.json's bytes."""

    digest: str
    index: bytes
    bundle_json: bytes
    bundle_json_digest: str
    relocation_map: Mapping[str, str]
    """Each image bundle.json names -> that image in the pulled repository, by the digest the
    index lists (cnab-to-oci's relocation map)."""


_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """Pulls and pushes bundles; thread-safe (one connection pool, a lock around tokens)."""

    def __init__(
        self,
        *,
        insecure_hosts: frozenset[str] = frozenset(),
        auths: Mapping[str, tuple[str, str]] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._insecure = frozenset(insecure_hosts)
        self._auths = dict(auths or {})
        self._http = httpx.Client(
            timeout=timeout_seconds, follow_redirects=False, transport=transport, trust_env=False
        )
        self._tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- pull -----------------------------------------------------------------------

    def resolve(self, repository: str, reference: str) -> str:
        """The digest a tag (or digest) names now, by a HEAD of its manifest."""
        repo = Repository.parse(repository)
        try:
            with self._send(repo, "HEAD", f"manifests/{reference}", _accept()) as response:
                digest = str(response.headers.get("Docker-Content-Digest", ""))
        except RegistryError as exc:
            if exc.status is None:  # no answer, or a wrong one
                raise
            digest = ""  # a HEAD answer has no body: GET it for the registry's own words
        if _DIGEST.fullmatch(digest):
            return digest
        # No digest header (or a refusal): read the manifest itself.
        return self._manifest(repo, reference)[1]

    def pull(self, repository: str, reference: str) -> PulledBundle:
        """Pulls a bundle by tag or digest, verifying every digest and size on the way."""
        repo = Repository.parse(repository)
        index, digest, media_type = self._manifest(repo, reference)
        try:
            config_manifest = layout.config_manifest_of(index, media_type)
            manifest, _, _ = self._manifest(repo, config_manifest.digest, config_manifest.size)
            config = layout.config_blob_of(manifest)
        except layout.LayoutError as exc:
            raise RegistryBadContent(repo.host, str(exc)) from None
        if config.size > MAX_BUNDLE_JSON_BYTES:
            raise RegistryBadContent(
                repo.host, f"bundle.json is larger than {MAX_BUNDLE_JSON_BYTES} bytes"
            )
        blob = self._blob(repo, config.digest, config.size)
        try:
            doc = json.loads(blob)
        except ValueError:
            doc = None  # not bundle.json at all: the caller's validation says so
        try:
            relocated = (
                layout.relocation_map(index, doc, repository) if isinstance(doc, dict) else {}
            )
        except layout.LayoutError as exc:
            raise RegistryBadContent(repo.host, str(exc)) from None
        return PulledBundle(digest, index, blob, config.digest, relocated)

    def relocation_map(
        self, repository: str, digest: str, doc: dict[str, object]
    ) -> dict[str, str]:
        """The relocation map of the bundle ``repository@digest`` whose bundle.json is ``doc``
        (its index read again: for bundles stored before maps were recorded)."""
        repo = Repository.parse(repository)
        index, _, _ = self._manifest(repo, digest)
        try:
            return layout.relocation_map(index, doc, repository)
        except layout.LayoutError as exc:
            raise RegistryBadContent(repo.host, str(exc)) from None

    def _manifest(
        self, repo: Repository, reference: str, size: int | None = None
    ) -> tuple[bytes, str, str]:
        """(bytes, digest, media type) of a manifest, its digest checked."""
        with self._send(repo, "GET", f"manifests/{reference}", _accept()) as response:
            body = read_body(repo.host, response, MAX_MANIFEST_BYTES, "manifest")
            header = response.headers.get("Docker-Content-Digest", "")
            media_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
        expected = reference if reference.startswith(("sha256:", "sha512:")) else header
        digest = expected or layout.digest_of(body)
        if not layout.matches(body, digest) or (header and not layout.matches(body, header)):
            raise RegistryBadContent(
                repo.host, f"the manifest of {repo.name}:{reference} does not match its digest"
            )
        if size is not None and len(body) != size:
            raise RegistryBadContent(repo.host, f"manifest {digest} is not {size} bytes long")
        return body, digest, media_type

    def _blob(self, repo: Repository, digest: str, size: int) -> bytes:
        with self._send(repo, "GET", f"blobs/{digest}", {}) as response:
            body = read_body(repo.host, response, size, "blob")
        if len(body) != size or not layout.matches(body, digest):
            raise RegistryBadContent(repo.host, f"blob {digest} does not match its digest or size")
        return body

    # --- push ----------------------------------------------------------------------

    def manifest_descriptor(self, repository: str, reference: str) -> layout.Descriptor:
        """Media type, digest and size of an (image) manifest in the repository."""
        repo = Repository.parse(repository)
        body, digest, media_type = self._manifest(repo, reference)
        try:
            declared = json.loads(body).get("mediaType")
        except (ValueError, AttributeError):
            raise RegistryBadContent(repo.host, f"{repo.name}:{reference} is no manifest") from None
        return layout.Descriptor(str(declared or media_type), digest, len(body))

    def mount_image(self, source: str, image: layout.Descriptor, target: str) -> None:
        """Makes the manifest ``image`` of repository ``source`` exist in ``target`` on the
        same registry (as cnab-to-oci's fixup copies images into the bundle's repository):
        its blobs by cross-repository mounts, then the manifest by digest; an index with
        each manifest it lists."""
        src, dst = Repository.parse(source), Repository.parse(target)
        if src.host != dst.host:
            raise RegistryRefused(
                dst.host, f"{source} is on another registry; push it to {dst.host} first"
            )
        body, digest, media_type = self._manifest(src, image.digest, image.size)
        try:
            doc = json.loads(body)
            declared = str(doc.get("mediaType") or media_type or image.media_type)
            if declared in layout.INDEX_TYPES:
                children = [_descriptor(m) for m in doc["manifests"]]
                for child in children:
                    self.mount_image(source, child, target)
            else:
                blobs = [doc["config"], *(doc.get("layers") or [])]
                for blob in blobs:
                    self._mount_blob(src, dst, str(blob["digest"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RegistryBadContent(src.host, f"{source}@{digest} is no image manifest") from None
        self.push_manifest(target, digest, body, declared)

    def _mount_blob(self, src: Repository, dst: Repository, digest: str) -> None:
        with self._send(dst, "HEAD", f"blobs/{digest}", {}, push=True, missing_ok=True) as r:
            if r.status_code == 200:
                return
        path = f"blobs/uploads/?mount={digest}&from={src.name}"
        with self._send(dst, "POST", path, {}, push=True) as r:
            if r.status_code == 201:
                return
        raise RegistryRefused(
            dst.host,
            f"the registry did not mount blob {digest} from {src.name} into {dst.name}; "
            "push the image to the bundle's repository first",
        )

    def push_blob(self, repository: str, data: bytes) -> str:
        """Uploads a blob unless the repository has it; returns its digest."""
        repo = Repository.parse(repository)
        digest = layout.digest_of(data)
        with self._send(repo, "HEAD", f"blobs/{digest}", {}, push=True, missing_ok=True) as r:
            if r.status_code == 200:
                return digest
        with self._send(repo, "POST", "blobs/uploads/", {}, push=True) as r:
            location = r.headers.get("Location", "")
        if not location:
            raise RegistryRefused(repo.host, "the registry gave no upload location")
        sep = "&" if "?" in location else "?"
        url = urljoin(self._base(repo), location) + f"{sep}digest={digest}"
        headers = {"Content-Type": "application/octet-stream"}
        with self._send(repo, "PUT", url, headers, push=True, content=data):
            pass
        return digest

    def push_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUTs a manifest under a tag or digest; returns its digest."""
        repo = Repository.parse(repository)
        headers = {"Content-Type": media_type}
        with self._send(repo, "PUT", f"manifests/{reference}", headers, push=True, content=data):
            pass
        return layout.digest_of(data)

    # --- HTTP ----------------------------------------------------------------------

    def _base(self, repo: Repository) -> str:
        scheme = "http" if repo.host in self._insecure else "https"
        return f"{scheme}://{repo.api_host}/v2/{repo.name}/"

    @contextmanager
    def _send(
        self,
        repo: Repository,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        push: bool = False,
        content: bytes | None = None,
        missing_ok: bool = False,
    ) -> Iterator[httpx.Response]:
        """One request with the auth dance and redirects; the response is open in the block."""
        url = path if "://" in path else self._base(repo) + path
        scope = f"repository:{repo.name}:{'pull,push' if push else 'pull'}"
        response = self._authorized(repo, method, url, headers, content, scope)
        try:
            redirects = 0
            while response.is_redirect and method in ("GET", "HEAD"):
                redirects += 1
                location = response.headers.get("Location", "")
                response.close()
                if redirects > MAX_REDIRECTS or not location:
                    raise RegistryRefused(repo.host, "too many redirects")
                # Blob storage elsewhere (ghcr.io -> a CDN): never send the registry's token there.
                url = urljoin(url, location)
                response = self._open(repo.host, method, url, dict(headers), None)
            if response.status_code >= 400 and not (missing_ok and response.status_code == 404):
                raise_for(repo, response)
            yield response
        finally:
            response.close()

    def _authorized(
        self,
        repo: Repository,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        scope: str,
    ) -> httpx.Response:
        with self._lock:
            token = self._tokens.get((repo.host, scope))
        response = self._open(repo.host, method, url, _with_auth(headers, token), content)
        if response.status_code != 401:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("bearer "):
            params = dict(_CHALLENGE_PARAM.findall(challenge))
            response.close()
            token = self._token(repo, params, params.get("scope") or scope)
            with self._lock:
                self._tokens[(repo.host, scope)] = token
            return self._open(repo.host, method, url, _with_auth(headers, token), content)
        credentials = self._credentials(repo.host)
        if challenge.lower().startswith("basic ") and credentials:
            response.close()
            return self._open(
                repo.host, method, url, _with_auth(headers, None, credentials), content
            )
        return response

    def _credentials(self, host: str) -> tuple[str, str] | None:
        """Configured (user, password) of a registry; docker's config names Docker Hub
        ``https://index.docker.io/v1/``."""
        names = [host]
        if host == DOCKER_HUB:
            names += ["index.docker.io/v1", "index.docker.io", DOCKER_HUB_API]
        return next((self._auths[n] for n in names if n in self._auths), None)

    def _token(self, repo: Repository, params: dict[str, str], scope: str) -> str:
        """A bearer token from the challenge's realm: anonymous, or with basic credentials."""
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryRefused(repo.host, "the registry's auth challenge names no realm")
        if urlsplit(realm).scheme == "http" and repo.host not in self._insecure:
            raise RegistryRefused(repo.host, "the token service is plain HTTP; refusing to use it")
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        credentials = self._credentials(repo.host)
        headers = _with_auth({}, None, credentials) if credentials else {}
        try:
            with self._http.stream("GET", realm, params=query, headers=headers) as response:
                if response.status_code >= 400:
                    raise_for(repo, response, token_service=True)
                body = read_body(repo.host, response, MAX_TOKEN_BYTES, "token")
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(
                repo.host, f"token service unreachable: {describe_http_error(exc)}"
            ) from None
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryRefused(repo.host, "the token service answered no token")
        return token

    def _open(
        self,
        host: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
    ) -> httpx.Response:
        try:
            request = self._http.build_request(method, url, headers=headers, content=content)
            return self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(host, f"unreachable: {describe_http_error(exc)}") from None


def _with_auth(
    headers: Mapping[str, str], token: str | None, basic: tuple[str, str] | None = None
) -> dict[str, str]:
    out = dict(headers)
    if token:
        out["Authorization"] = f"Bearer {token}"
    elif basic:
        pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        out["Authorization"] = f"Basic {pair}"
    return out


def _descriptor(entry: object) -> layout.Descriptor:
    """A manifest list entry (TypeError / KeyError / ValueError when it is none)."""
    if not isinstance(entry, dict):
        raise TypeError("not a descriptor")
    return layout.Descriptor(
        str(entry.get("mediaType", "")), str(entry["digest"]), int(entry["size"])
    )


def _accept() -> dict[str, str]:
    return {"Accept": layout.MANIFEST_ACCEPT}
