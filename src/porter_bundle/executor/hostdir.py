"""Outputs through a host directory: when the engine shares this process's filesystem, a run's
outputs directory is a private directory here, bind-mounted into its container, and the outputs
are read from it instead of as a tar the engine builds (``GET /containers/{id}/archive``: for
Podman the largest part of a short action's time, as it mounts the stopped container's storage).

It is used only where it behaves the same as the archive:

- the engine listens on a local unix socket, and a one-time probe shows it sees this
  filesystem: a container (created, never started) with a directory of ours bind-mounted must
  show the random file we put there (``HEAD /containers/{id}/archive``). A remote engine
  would show its own (empty, or created) directory instead;
- the image runs as root (its ``Config.User`` is empty, ``root`` or ``0``): root in the
  container may write to a directory of ours, as our own user under rootless Podman and as
  root with a rootful engine; another user may not, so those images use the archive;
- the private root (``$XDG_RUNTIME_DIR`` or the temp dir, ``porter-bundle-<uid>/outputs/<engine>``)
  is a real directory owned by this user with mode 0700, and every run directory is 0700.

Outputs are read without following links (a link the container made could name any host file),
regular files only, up to the same size limit. A file that cannot be read here (e.g. written by
root of a rootful engine with mode 0600 while this process is not root) sends the run back to
the archive, which the still existing container answers. A run's directory is removed with its
container; one left behind by a crash is swept when the executor next lists its orphans (no
container of that run exists), or read by recovery when the container does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker.errors

from porter_bundle.executor._archive import files_tar, normalize_path
from porter_bundle.executor.base import LABEL_MANAGED, LABEL_RUN_ID, ContainerSpec
from porter_bundle.executor.bridge import CallPool
from porter_bundle.executor.engine import Engine, describe

log = logging.getLogger(__name__)

LABEL_HOST_OUTPUTS = "sh.porter.bundle.outputs-host-dir"
"""On a container whose outputs directory is bind-mounted: the host directory (for recovery)."""

PROBE_MOUNT = "/porter-bundle-probe"
PRIVATE_MODE = 0o700
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ROOT_USERS = ("", "root", "0")


def image_runs_as_root(user: str) -> bool:
    """Whether an image's ``Config.User`` (``user[:group]``) is root."""
    return user.partition(":")[0] in _ROOT_USERS


def default_root(engine_url: str) -> Path:
    """This user's private directory for the run directories of one engine."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    engine = hashlib.sha256(engine_url.encode()).hexdigest()[:16]
    return Path(base) / f"porter-bundle-{os.getuid()}" / "outputs" / engine


class HostOutputs:
    """Private host directories bind-mounted at runs' outputs directories, where that works."""

    def __init__(self, engine: Engine, calls: CallPool, root: Path | None = None) -> None:
        self._engine = engine
        self._calls = calls
        self._root = root or default_root(engine.url)
        self._usable: bool | None = None if engine.url.startswith("unix://") else False
        self._lock = asyncio.Lock()

    @property
    def root(self) -> Path:
        """Where the run directories are."""
        return self._root

    async def run_dir(self, spec: ContainerSpec, image: Mapping[str, Any]) -> Path | None:
        """A fresh private directory to bind-mount at the run's outputs directory, or None when
        outputs go through the archive for this run (see the module docstring). ``image``: the
        engine's inspection of the run's image."""
        user = str((image.get("Config") or {}).get("User") or "")
        if not spec.outputs_dir or not image_runs_as_root(user):
            return None
        try:
            normalize_path(spec.outputs_dir)
        except ValueError:
            return None
        if not await self._check(spec.image):
            return None
        path = self._root / _dir_name(spec.run_id)
        try:
            shutil.rmtree(path, ignore_errors=True)  # a leftover of the same run
            path.mkdir(mode=PRIVATE_MODE)
        except OSError as exc:
            log.warning("outputs go through the engine: cannot create %s: %s", path, describe(exc))
            return None
        return path

    def mount(
        self, path: Path, spec: ContainerSpec, archive: bytes | None
    ) -> tuple[list[str], bytes | None] | None:
        """The bind of ``path`` at the outputs directory, and the files archive without the
        files that go into the outputs directory (those are written into ``path``, 0600);
        None when they cannot be written (the run then uses the archive for everything)."""
        outputs_dir = normalize_path(spec.outputs_dir)
        inside = {
            normalize_path(name): content
            for name, content in spec.files.items()
            if normalize_path(name).startswith(outputs_dir + "/")
        }
        try:
            for name, content in inside.items():
                target = path / name.removeprefix(outputs_dir + "/")
                target.parent.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                with open(os.open(target, flags, 0o600), "wb") as file:
                    file.write(content)
        except OSError as exc:
            log.warning(
                "outputs go through the engine: cannot write into %s: %s", path, describe(exc)
            )
            return None
        if inside:
            rest = {n: c for n, c in spec.files.items() if normalize_path(n) not in inside}
            archive = files_tar(rest) if rest else None
        return [f"{path}:{outputs_dir}:{bind_options()}"], archive

    def owns(self, path: str) -> Path | None:
        """The run directory a container's label names, if it is one of ours."""
        candidate = Path(path)
        if candidate.parent != self._root or _UNSAFE.search(candidate.name):
            return None
        return candidate if candidate.name.strip(".") else None

    async def _check(self, image: str) -> bool:
        if self._usable is not None:
            return self._usable
        async with self._lock:
            if self._usable is None:
                self._usable = await self._probe(image)
        return self._usable

    async def _probe(self, image: str) -> bool:
        """The root is private and the engine sees a file put in a directory under it."""
        try:
            _private_dir(self._root)
        except OSError as exc:
            log.info("outputs go through the engine: %s", describe(exc))
            return False
        probe = self._root / f".probe-{secrets.token_hex(8)}"
        try:
            probe.mkdir(mode=PRIVATE_MODE)
            token = secrets.token_hex(8)
            (probe / token).touch(mode=0o600)
            seen = await self._calls.call(self._sees, image, probe, token)
        except (OSError, docker.errors.APIError) as exc:
            log.info("outputs go through the engine: the probe failed: %s", describe(exc))
            seen = False
        finally:
            shutil.rmtree(probe, ignore_errors=True)
        log.info(
            "outputs %s",
            "through a host directory" if seen else "through the engine (it does not see ours)",
        )
        return seen

    def _sees(self, image: str, probe: Path, token: str) -> bool:
        """Blocking: a created container with ``probe`` mounted shows ``token`` in it."""
        api = self._engine.api
        created = api.create_container(
            image,
            entrypoint=["/porter-bundle-probe"],
            # Found and removed as an orphan by the next start if this process dies meanwhile.
            labels={LABEL_MANAGED: "true", LABEL_RUN_ID: f"probe-{token}"},
            host_config=api.create_host_config(
                network_mode="none", binds=[f"{probe}:{PROBE_MOUNT}:{bind_options()}"]
            ),
        )
        try:
            url = f"{api.base_url}/v{api.api_version}/containers/{created['Id']}/archive"
            with api.head(url, params={"path": f"{PROBE_MOUNT}/{token}"}) as response:
                return response.status_code == 200
        finally:
            api.remove_container(created["Id"], force=True)

    def read(self, path: Path, limit: int) -> tuple[dict[str, bytes], str] | None:
        """Blocking: the regular files under ``path`` by relative path and an error message
        ("" if none); None when something cannot be read here (ask the engine instead)."""
        outputs: dict[str, bytes] = {}
        left = limit
        try:
            for relative, content in _regular_files(path, limit):
                left -= len(content)
                if left < 0:
                    return {}, f"the outputs exceed {limit} bytes"
                outputs[relative] = content
        except OSError as exc:
            log.info("outputs in %s unreadable here, asking the engine: %s", path, describe(exc))
            return None
        return outputs, ""

    def discard(self, path: Path) -> None:
        """Removes a run directory; failures are logged (the next sweep tries again)."""
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, describe(exc))

    def close(self) -> None:
        """Removes this engine's directory if no run directory is left in it."""
        with contextlib.suppress(OSError):
            self._root.rmdir()

    def sweep(self, keep: Iterable[str]) -> None:
        """Removes every run directory but those of the run IDs in ``keep``."""
        kept = {_dir_name(run_id) for run_id in keep}
        try:
            entries = list(os.scandir(self._root))
        except OSError:
            return
        for entry in entries:
            if entry.name not in kept and not entry.name.startswith(".probe-"):
                self.discard(Path(entry.path))


def bind_options() -> str:
    """Read-write; ``z`` relabels it for the container where SELinux is on (else ignored)."""
    return "rw,z"


def _dir_name(run_id: str) -> str:
    return _UNSAFE.sub("-", run_id)


def _private_dir(path: Path) -> None:
    """Creates ``path`` (and parents) 0700; OSError unless it is a real directory of ours
    that nobody else may enter."""
    path.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    for level in (path, path.parent, path.parent.parent):
        info = os.lstat(level)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise PermissionError(errno.EPERM, "not a directory of this user", str(level))
        if info.st_mode & 0o077:
            os.chmod(level, PRIVATE_MODE)


def _regular_files(root: Path, limit: int) -> Iterator[tuple[str, bytes]]:
    """(relative path, content) of each regular file under ``root``, never following a link;
    a file is read up to ``limit`` + 1 bytes (enough to tell that it is over the limit)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    pending = [("", os.open(root, flags | os.O_DIRECTORY))]
    try:
        while pending:
            prefix, fd = pending.pop()
            try:
                with os.scandir(fd) as entries:
                    found = list(entries)
                for entry in found:
                    mode = entry.stat(follow_symlinks=False).st_mode
                    name = prefix + entry.name
                    if stat.S_ISDIR(mode):
                        sub = os.open(entry.name, flags | os.O_DIRECTORY, dir_fd=fd)
                        pending.append((name + "/", sub))
                    elif stat.S_ISREG(mode):
                        with open(os.open(entry.name, flags, dir_fd=fd), "rb") as file:
                            # Replaced by something else since the scan: not an output.
                            if stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                                yield name, file.read(limit + 1)
            finally:
                os.close(fd)
    finally:
        for _, fd in pending:
            os.close(fd)
