"""Images: present on the engine, else pulled, with registry credentials and plain-HTTP registries.

Podman's Docker-compatible pull cannot be told to skip TLS, so a registry listed as insecure
is pulled from through Podman's native endpoint; Docker decides that itself (its daemon's
``insecure-registries``). No password ever reaches a result: the engine's words are scrubbed.
Both ways stream the engine's progress under a read timeout (the SDK's own ``pull`` has
none), so a wedged engine or registry fails the pull instead of holding a thread for ever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import docker.auth
import docker.errors
import docker.utils

from porter_bundle.executor.bridge import CallPool
from porter_bundle.executor.engine import PULL_READ_TIMEOUT_SECONDS, Engine, engine_words


class ImagePuller:
    """Makes sure an engine has an image, pulling it (once at a time per image) if not."""

    def __init__(
        self,
        calls: CallPool,
        *,
        insecure_registries: frozenset[str] = frozenset(),
        registry_auth: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """
        Args:
            calls: the pool that runs the blocking engine calls.
            insecure_registries: registry hosts (``host[:port]``) pulled from over plain HTTP.
            registry_auth: registry host -> (user, password) for pulls.
        """
        self._calls = calls
        self._insecure = frozenset(insecure_registries)
        self._auth = dict(registry_auth or {})
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure_image(
        self, engine: Engine, image: str, digest: str = ""
    ) -> tuple[str, str, Mapping[str, Any]]:
        """Pulls the image unless the engine has it, then checks it has ``digest`` (see
        :meth:`verify_digest`): (an error message or "", the image's registry digest, the
        engine's inspection of the image, empty on an error)."""
        error, found = await self._pull_if_missing(engine, image)
        if error:
            return error, "", {}
        try:  # just pulled: inspected now
            info = found if found is not None else await self._inspect(engine, image)
        except docker.errors.APIError as exc:
            return f"inspecting image {image} failed: {engine_words(exc)}", "", {}
        error, registry_digest = await self.verify_digest(engine, image, digest, info)
        return error, registry_digest, info

    async def _pull_if_missing(
        self, engine: Engine, image: str
    ) -> tuple[str, Mapping[str, Any] | None]:
        """Pulls the image unless the engine has it: an error message or "", and the image's
        inspection when it was there already."""
        # One pull per image at a time: runs of the same bundle started together wait for
        # the first pull instead of each starting their own.
        lock = self._locks.setdefault(image, asyncio.Lock())
        async with lock:
            try:
                found: Mapping[str, Any] = await self._calls.call(engine.api.inspect_image, image)
                return "", found
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                return f"inspecting image {image} failed: {engine_words(exc)}", None
            error = await self._calls.call(self._pull, engine, image)
            if error:
                return f"pulling image {image} failed: {self._scrub(error)}", None
            return "", None

    async def verify_digest(
        self,
        engine: Engine,
        image: str,
        digest: str,
        found: Mapping[str, Any] | None = None,
    ) -> tuple[str, str]:
        """(error or "", the image's registry digest): the image must have ``digest`` among
        its repo digests when one is given (cnab-go's check); without one, the digest of the
        image's own repository, else any, else "". ``found``: the image's inspection, when
        already at hand (else the engine is asked)."""
        try:
            info = found if found is not None else await self._inspect(engine, image)
        except docker.errors.APIError as exc:
            return f"inspecting image {image} failed: {engine_words(exc)}", ""
        repo_digests = [str(d) for d in info.get("RepoDigests") or []]
        digests = [d.partition("@")[2] for d in repo_digests if "@" in d]
        if digest:
            if digest in digests:
                return "", digest
            have = ", ".join(sorted(set(digests))) or "none"
            return (
                f"content digest mismatch: the invocation image {image} should have digest "
                f"{digest}, the engine's image has {have}"
            ), ""
        repository = image.partition("@")[0]
        head, sep, tail = repository.rpartition(":")
        repository = head if sep and "/" not in tail else repository
        own = [d.partition("@")[2] for d in repo_digests if d.partition("@")[0] == repository]
        return "", (own or digests or [""])[0]

    async def _inspect(self, engine: Engine, image: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] = await self._calls.call(engine.api.inspect_image, image)
        return found

    def _pull(self, engine: Engine, image: str) -> str:
        """Pulls in the calling thread; returns the engine's error message or ""."""
        try:
            registry, _ = docker.auth.resolve_repository_name(
                docker.utils.parse_repository_tag(image)[0]
            )
        except docker.errors.DockerException as exc:
            return engine_words(exc)
        credentials = self._auth.get(registry)
        auth_config = (
            {"username": credentials[0], "password": credentials[1], "serveraddress": registry}
            if credentials
            else None
        )
        try:
            if registry in self._insecure and engine.libpod_version is not None:
                return _libpod_pull(engine, image, auth_config)
            error = _docker_pull(engine, image, registry, auth_config)
            if error:
                return error
        except docker.errors.APIError as exc:
            return engine_words(exc)
        try:
            engine.api.inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            return "the engine reported no error, yet does not have the image"
        return ""

    def _scrub(self, text: str) -> str:
        """Engines do not echo passwords, but a result must never carry one: make sure."""
        for _, password in self._auth.values():
            if password:
                text = text.replace(password, "***")
        return text


def _timeout(engine: Engine) -> tuple[float, float]:
    """(connect, read) timeouts of a pull's request."""
    return (engine.probe_timeout, PULL_READ_TIMEOUT_SECONDS)


def _docker_pull(
    engine: Engine, image: str, registry: str, auth_config: dict[str, str] | None
) -> str:
    """Pulls through the Docker-compatible ``/images/create``, as the SDK's ``pull`` does
    (same parameters and credentials: the given ones, else the docker config's), but under a
    read timeout."""
    repository, tag = docker.utils.parse_repository_tag(image)
    if auth_config:
        headers = {"X-Registry-Auth": docker.auth.encode_header(auth_config)}
    else:
        header = docker.auth.get_config_header(engine.api, registry)
        headers = {"X-Registry-Auth": header} if header else {}
    return _streamed_pull(
        engine,
        f"{engine.api.base_url}/v{engine.api.api_version}/images/create",
        {"fromImage": repository, "tag": tag or "latest"},
        headers,
    )


def _error_body(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text or f"HTTP {response.status_code}")
    return str(body.get("message") or body.get("cause") or body)


def _libpod_pull(engine: Engine, image: str, auth_config: dict[str, str] | None) -> str:
    """Pulls through Podman's native endpoint, which (unlike its Docker-compatible
    /images/create) takes ``tlsVerify=false`` for a registry over plain HTTP."""
    headers = {"X-Registry-Auth": docker.auth.encode_header(auth_config)} if auth_config else {}
    url = f"{engine.api.base_url}/v{engine.libpod_version}/libpod/images/pull"
    return _streamed_pull(engine, url, {"reference": image, "tlsVerify": "false"}, headers)


def _streamed_pull(
    engine: Engine, url: str, params: Mapping[str, str], headers: Mapping[str, str | bytes]
) -> str:
    """POSTs a pull and reads its progress under the read timeout; the error or ""."""
    with engine.api.post(
        url, params=params, headers=headers, stream=True, timeout=_timeout(engine)
    ) as response:
        if response.status_code >= 400:
            return _error_body(response)
        # A failed pull still answers 200: the error is the stream's last message.
        for line in response.iter_lines():
            if not line:
                continue
            message = json.loads(line)
            if isinstance(message, dict) and message.get("error"):
                detail = message.get("errorDetail")
                text = detail.get("message") if isinstance(detail, dict) else None
                return str(text or message["error"])
    return ""
