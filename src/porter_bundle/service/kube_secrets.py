"""Kubernetes Secrets as a secret store: ``secret: X`` in a set means the Secret X, key ``value``,
in the action's namespace, as the Porter operator's documents mean it
(getporter/operator ``tests/integration/credset_test.go``).

The server reads them through the Kubernetes API with its pod's service account
(``GET /api/v1/namespaces/{namespace}/secrets/{name}``; the account needs ``get`` on secrets
there). An action in porter-bundle's global namespace (``""``) reads the server's own namespace.
A missing Secret or key, refused access or an unreachable API raise :class:`SecretUnavailable`
with the reason (the action then fails FAILED_PRECONDITION, reason SOURCE_UNRESOLVED): never a
value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Any

import httpx

from porter_bundle.service.sources import SecretUnavailable

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
KEY = "value"
TIMEOUT_SECONDS = 10.0
# Kubernetes object names (DNS-1123 subdomain) and namespaces (DNS-1123 label).
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def in_cluster_api() -> str:
    """The API server's URL inside a pod (KUBERNETES_SERVICE_HOST/PORT), else ""."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return ""
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class KubernetesSecretStore:
    """Reads Secrets through the Kubernetes API with a service account token.

    ``token_file`` is re-read for every request (Kubernetes rotates projected tokens); the CA
    is ``ca.crt`` beside it when the API is https. ``own_namespace`` is used for the global
    namespace (default: the service account's ``namespace`` file)."""

    def __init__(
        self,
        api: str,
        *,
        token_file: Path = SERVICE_ACCOUNT / "token",
        own_namespace: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        if not api:
            raise ValueError(
                "the kubernetes secret store needs the API's URL (--kubernetes-api), or to run "
                "in a pod (KUBERNETES_SERVICE_HOST)"
            )
        self.api = api.rstrip("/")
        self.token_file = Path(token_file)
        ca = self.token_file.parent / "ca.crt"
        verify: Any = str(ca) if self.api.startswith("https://") and ca.is_file() else True
        self._client = httpx.Client(timeout=timeout, verify=verify)
        if own_namespace is None:
            try:
                own_namespace = (self.token_file.parent / "namespace").read_text().strip()
            except OSError:
                own_namespace = "default"
        self.own_namespace = own_namespace

    def close(self) -> None:
        self._client.close()

    def get(self, name: str, namespace: str) -> str | None:
        namespace = namespace or self.own_namespace
        where = f"Kubernetes Secret {name!r} in namespace {namespace!r}"
        if not _NAME.fullmatch(name) or not _NAMESPACE.fullmatch(namespace):
            raise SecretUnavailable(f"{where} cannot exist: not a valid Kubernetes name")
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise SecretUnavailable(
                f"cannot read the service account token {self.token_file} ({exc.strerror})"
            ) from None
        url = f"{self.api}/api/v1/namespaces/{namespace}/secrets/{name}"
        try:
            resp = self._client.get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise SecretUnavailable(
                f"{where}: the Kubernetes API at {self.api} cannot be reached ({type(exc).__name__})"
            ) from None
        if resp.status_code == 404:
            raise SecretUnavailable(f"{where} does not exist")
        if resp.status_code in (401, 403):
            raise SecretUnavailable(
                f"{where}: the Kubernetes API refused the server's service account "
                f"(HTTP {resp.status_code}); it needs get on secrets there"
            )
        if resp.status_code != 200:
            raise SecretUnavailable(f"{where}: the Kubernetes API answered HTTP {resp.status_code}")
        try:
            data = resp.json().get("data") or {}
        except ValueError:
            raise SecretUnavailable(f"{where}: the Kubernetes API answered no JSON") from None
        if KEY not in data:
            raise SecretUnavailable(f"{where} has no key {KEY!r}")
        try:
            return base64.b64decode(data[KEY], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            raise SecretUnavailable(f"{where}: key {KEY!r} is not base64 of UTF-8 text") from None
