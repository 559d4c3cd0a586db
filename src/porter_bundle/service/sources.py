"""Where credential and parameter values come from at run time.

A set entry's source is one of: a literal ``value``, an ``env`` variable of the
server, a file ``path`` on the server, a shell ``command`` (its stdout), or a
``secret`` in a secret store. Failures name the entry and the source, never a value.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from google.protobuf import json_format

from porter.bundle.v1.value_set_pb2 import ValueSource
from porter_bundle.errors import FailedPrecondition

DEFAULT_COMMAND_TIMEOUT = 10.0
MAX_SOURCE_BYTES = 1024 * 1024
_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class SecretStore(Protocol):
    """A store of named secrets: the built-in :class:`DirectorySecretStore`, or another one
    (:class:`porter_bundle.service.kube_secrets.KubernetesSecretStore`: the Kubernetes Secrets
    of the action's namespace, as the Porter operator's documents mean ``secret: X``)."""

    def get(self, name: str, namespace: str) -> str | None:
        """The value of secret ``name`` for an action in ``namespace``; None when the store has
        no such secret. :class:`SecretUnavailable` says why it cannot be read otherwise."""
        ...


class SecretUnavailable(Exception):
    """A secret that exists in some form but cannot be used; the message says why (no value)."""


class DirectorySecretStore:
    """The built-in secret store: one file per secret in a directory (name = file name), the
    same for every namespace."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str, namespace: str = "") -> str | None:
        """The content of ``root/name``; None when absent. Names cannot leave the directory."""
        if not _SECRET_NAME.fullmatch(name):
            return None
        path = self.root / name
        try:
            return path.read_text()
        except FileNotFoundError:
            return None


@dataclass
class SourceResolver:
    """Turns a :class:`ValueSource` into its value."""

    secrets: SecretStore
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT

    def resolve(self, what: str, source: ValueSource, namespace: str = "") -> Any:
        """The value of ``source`` for an action in ``namespace``; ``what`` names the entry in
        errors (e.g. "credential 'token'")."""
        kind = source.WhichOneof("kind")
        if kind == "value":
            return json_format.MessageToDict(source.value)
        if kind == "env":
            if source.env not in self.environ:
                raise _unresolved(
                    what, f"environment variable {source.env} is not set on the server"
                )
            return self.environ[source.env]
        if kind == "path":
            return self._read(what, Path(source.path))
        if kind == "command":
            return self._command(what, source.command)
        if kind == "secret":
            try:
                value = self.secrets.get(source.secret, namespace)
            except SecretUnavailable as exc:
                raise _unresolved(what, str(exc)) from None
            if value is None:
                raise _unresolved(what, f"secret {source.secret!r} is not in the secret store")
            return value
        raise _unresolved(what, "it has no source")

    def _read(self, what: str, path: Path) -> str:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_SOURCE_BYTES + 1)
        except OSError as exc:
            raise _unresolved(what, f"file {path} cannot be read ({exc.strerror})") from None
        except ValueError:  # a NUL in the path (refused on write since; older sets may hold one)
            raise _unresolved(what, "its file path holds a NUL character") from None
        if len(data) > MAX_SOURCE_BYTES:
            raise _unresolved(what, f"file {path} is larger than {MAX_SOURCE_BYTES} bytes")
        return data.decode(errors="replace")

    def _command(self, what: str, command: str) -> str:
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", command],
                capture_output=True,
                timeout=self.command_timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _unresolved(
                what, f"its command did not finish within {self.command_timeout:g}s"
            ) from None
        except ValueError:  # a NUL in the command (refused on write since)
            raise _unresolved(what, "its command holds a NUL character") from None
        if done.returncode != 0:
            # stderr is not repeated: it might echo the secret the command was meant to produce.
            raise _unresolved(what, f"its command exited with status {done.returncode}")
        out = done.stdout[:MAX_SOURCE_BYTES].decode(errors="replace")
        return out[:-1] if out.endswith("\n") else out


def _unresolved(what: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"cannot resolve {what}: {why}", reason="SOURCE_UNRESOLVED", metadata={"entry": what}
    )
