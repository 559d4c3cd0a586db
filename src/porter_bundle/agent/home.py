"""The agent's start, as Porter's agent does it, and where it finds porter-bundle.

**Configuration copy.** Every file under ``$PORTER_CONFIG`` (``/porter-config``, the operator's
mounted Secret) is copied into ``$PORTER_HOME`` (``/app/.porter``), following symlinks and
skipping names that start with ``.`` (the Secret's ``..data`` and ``..2024_...`` entries), each
announced as Porter does: ``Loading configuration config.yaml into /app/.porter/config.yaml``.

**Which server.** The PorterConfig the operator renders into ``config.yaml`` names a storage
entry of plugin ``porter-bundle`` (the one ``default-storage`` names, else the first of that
plugin)::

    default-storage: porter-bundle
    storage:
      - name: porter-bundle
        plugin: porter-bundle
        config:
          address: porter-bundle.porter-bundle-system.svc:3001   # host:port, required
          token: ${env.PORTER_BUNDLE_TOKEN}   # bearer token (optional); ${env.X} reads env X
          tls: true                           # optional: TLS with the system roots
          tls-ca: /app/.porter/ca.pem         # optional: PEM CA (a file copied from the Secret)

Without such an entry (or for what it leaves out), the environment: ``PORTER_BUNDLE_SERVER``,
``PORTER_BUNDLE_TOKEN``, ``PORTER_BUNDLE_TLS_CA`` — e.g. from the operator's optional
``porter-env`` Secret (``envFrom``). The token is never printed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PORTER_HOME = "/app/.porter"
DEFAULT_PORTER_CONFIG = "/porter-config"
PLUGIN = "porter-bundle"
ENV_SERVER = "PORTER_BUNDLE_SERVER"
ENV_TOKEN = "PORTER_BUNDLE_TOKEN"
ENV_TLS_CA = "PORTER_BUNDLE_TLS_CA"
_ENV_REF = re.compile(r"\$\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")


class AgentSetupError(Exception):
    """The agent cannot start (Porter's agent exits 1)."""


@dataclass(frozen=True)
class ServerConfig:
    """How to reach porter-bundle: the fields :mod:`porter_bundle.client.connection` reads."""

    server: str
    token: str = ""
    tls: bool = False
    tls_ca: str = ""
    namespace: str = ""
    """The PorterConfig's ``namespace``: the default of ``-n``."""
    token_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""


def porter_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("PORTER_HOME") or DEFAULT_PORTER_HOME)


def copy_config(env: Mapping[str, str], say: Callable[[str], None]) -> None:
    """Copies ``$PORTER_CONFIG``'s files into ``$PORTER_HOME`` (nothing when it is absent)."""
    source = Path(env.get("PORTER_CONFIG") or DEFAULT_PORTER_CONFIG)
    home = porter_home(env)
    if not source.is_dir():
        return
    for path in sorted(_files(source)):
        relative = path.relative_to(source)
        target = home / relative
        say(f"Loading configuration {relative} into {target}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)  # follows symlinks
        except OSError as exc:
            raise AgentSetupError(
                f"error loading configuration {relative} into {target}: {exc.strerror}"
            ) from None


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():  # follows a symlinked directory as filepath.Walk's caller does
            found.extend(_files(entry))
        elif entry.is_file():
            found.append(entry)
    return found


def load_porter_config(env: Mapping[str, str]) -> dict[str, Any]:
    """``$PORTER_HOME/config.yaml`` as a mapping ({} when there is none)."""
    path = porter_home(env) / "config.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AgentSetupError(f"invalid configuration {path}: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise AgentSetupError(f"invalid configuration {path}: not a mapping")
    return loaded


def server_config(config: Mapping[str, Any], env: Mapping[str, str]) -> ServerConfig:
    """Where porter-bundle is, from the config's ``porter-bundle`` storage entry, then env."""
    entry = _storage_entry(config)
    settings = entry.get("config") or {}
    if not isinstance(settings, dict):
        raise AgentSetupError(f"storage {entry.get('name')!r}: config must be a mapping")

    def get(key: str, env_name: str) -> str:
        value = settings.get(key)
        if value is None or value == "":
            return env.get(env_name, "").strip()
        return _expand(str(value), env, key)

    address = get("address", ENV_SERVER)
    if not address:
        raise AgentSetupError(
            f"no porter-bundle server configured: add a storage entry with plugin {PLUGIN} "
            f"and config.address to the PorterConfig, or set {ENV_SERVER}"
        )
    tls = settings.get("tls", False)
    if isinstance(tls, str):
        tls = _expand(tls, env, "tls").lower() in ("1", "true", "yes", "on")
    namespace = config.get("namespace", "")
    return ServerConfig(
        server=address,
        token=get("token", ENV_TOKEN),
        tls=bool(tls),
        tls_ca=get("tls-ca", ENV_TLS_CA),
        namespace=str(namespace) if namespace is not None else "",
    )


def _storage_entry(config: Mapping[str, Any]) -> Mapping[str, Any]:
    entries = config.get("storage") or []
    if not isinstance(entries, list):
        raise AgentSetupError("config.yaml: storage must be a list")
    ours = [e for e in entries if isinstance(e, dict) and e.get("plugin") == PLUGIN]
    wanted = config.get("default-storage")
    for entry in ours:
        if entry.get("name") == wanted:
            return entry
    return ours[0] if ours else {}


def _expand(value: str, env: Mapping[str, str], key: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise AgentSetupError(f"storage config {key}: environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(one, value).strip()


def environ() -> dict[str, str]:
    return dict(os.environ)
