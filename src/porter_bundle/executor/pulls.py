"""Images: present on the engine, else pulled, with registry credentials and plain-HTTP registries.

Podman's Docker-compatible pull cannot be told to skip TLS, so a registry listed as insecure
is pulled from through Podman's native endpoint; Docker decides that itself (its daemon's
``insecure-registries``). No password ever reaches a result: the engine's words are scrubbed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import docker.auth
import docker.errors
import docker.utils

from porter_bundle.executor.bridge import CallPool
from porter_bundle.executor.engine import Engine, engine_words


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

    async def ensure_image(self, engine: Engine, image: str, digest: str = "") -> tuple[str, str]:
        """Pulls the image unless the engine has it, then checks it has ``digest`` (see
        :meth:`verify_digest`): (an error message or "", the image's registry digest)."""
        error = await self._pull_if_missing(engine, image)
        if error:
            return error, ""
        return await self.verify_digest(engine, image, digest)

    async def _pull_if_missing(self, engine: Engine, image: str) -> str:
        """Pulls the image unless the engine has it; returns an error message or ""."""
        # One pull per image at a time: runs of the same bundle started together wait for
        # the first pull instead of each starting their own.
        lock = self._locks.setdefault(image, asyncio.Lock())
        async with lock:
            try:
                await self._calls.call(engine.api.inspect_image, image)
                return ""
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                return f"inspecting image {image} failed: {engine_words(exc)}"
            error = await self._calls.call(self._pull, engine, image)
            if error:
                return f"pulling image {image} failed: {self._scrub(error)}"
            return ""

    async def verify_digest(self, engine: Engine, image: str, digest: str) -> tuple[str, str]:
        """(error or "", the image's registry digest): the image must have ``digest`` among
        its repo digests when one is given (cnab-go's check); without one, the digest of the
        image's own repository, else any, else ""."""
        try:
            found = await self._calls.call(engine.api.inspect_image, image)
        except docker.errors.APIError as exc:
            return f"inspecting image {image} failed: {engine_words(exc)}", ""
        repo_digests = [str(d) for d in found.get("RepoDigests") or []]
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
            messages = engine.api.pull(image, stream=True, decode=True, auth_config=auth_config)
            # A failed pull still answers 200: the error is the stream's last message.
            for message in messages:
                if isinstance(message, dict) and message.get("error"):
                    return str(message.get("errorDetail", {}).get("message") or message["error"])
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


def _libpod_pull(engine: Engine, image: str, auth_config: dict[str, str] | None) -> str:
    """Pulls through Podman's native endpoint, which (unlike its Docker-compatible
    /images/create) takes ``tlsVerify=false`` for a registry over plain HTTP."""
    headers = {"X-Registry-Auth": docker.auth.encode_header(auth_config)} if auth_config else {}
    url = f"{engine.api.base_url}/v{engine.libpod_version}/libpod/images/pull"
    with engine.api.post(
        url,
        params={"reference": image, "tlsVerify": "false"},
        headers=headers,
        stream=True,
        timeout=None,
    ) as response:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                return response.text or f"HTTP {response.status_code}"
            return str(body.get("message") or body.get("cause") or body)
        for line in response.iter_lines():
            if not line:
                continue
            message = json.loads(line)
            if isinstance(message, dict) and message.get("error"):
                return str(message["error"])
    return ""
