"""Tar archives in and out of containers: the Docker Engine API copies files only as tar streams."""

from __future__ import annotations

import io
import posixpath
import tarfile
import time
from collections.abc import Mapping

import docker
import docker.errors

from porter_bundle.executor.engine import describe, engine_words

DIR_MODE = 0o755
FILE_MODE = 0o644


def normalize_path(path: str) -> str:
    """The absolute, normalized form of a path to write in a container; ValueError if unusable."""
    if not path.startswith("/"):
        raise ValueError(f"file path {path!r} is not absolute")
    normalized = posixpath.normpath(path)
    # normpath keeps a leading "//" (POSIX says it may mean something else); it does not here.
    normalized = "/" + normalized.lstrip("/")
    if normalized == "/":
        raise ValueError(f"file path {path!r} names the root directory")
    return normalized


def files_tar(files: Mapping[str, bytes]) -> bytes:
    """A tar, to extract at ``/``, holding ``files`` (absolute path -> content).

    Every parent directory gets an entry of its own: extracting ``a/b/c`` into a container
    where ``a/b`` does not exist fails on some engines instead of creating it.
    """
    now = time.time()
    paths = {normalize_path(path): content for path, content in files.items()}
    directories: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent != "/":
            directories.add(parent)
            parent = posixpath.dirname(parent)
    clash = directories & paths.keys()
    if clash:
        raise ValueError(f"file path {sorted(clash)[0]!r} is also the directory of another file")

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # Parents before children: sorting by depth, then by name for a stable archive.
        for directory in sorted(directories, key=lambda d: (d.count("/"), d)):
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type = tarfile.DIRTYPE
            info.mode = DIR_MODE
            info.mtime = int(now)
            tar.addfile(info)
        for path in sorted(paths):
            content = paths[path]
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(content)
            info.mode = FILE_MODE
            info.mtime = int(now)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def outputs_from_tar(archive: bytes) -> dict[str, bytes]:
    """The regular files of a directory archive, keyed by their path relative to that directory.

    The engine names every member after the directory it was asked for (``outputs/conn``,
    ``outputs/sub/file``), so the first path component is dropped; Podman names those of a
    bind-mounted directory from its root instead (``/conn``). Links, devices and
    directories are not outputs and are skipped.
    """
    outputs: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if not member.isreg():
                continue
            name = posixpath.normpath(member.name.lstrip("/"))
            # Podman names the members of a bind-mounted directory from its root ("/conn").
            relative = name if member.name.startswith("/") else name.partition("/")[2]
            if not relative or relative.startswith("../"):
                continue
            extracted = tar.extractfile(member)
            if extracted is not None:
                with extracted:
                    outputs[relative] = extracted.read()
    return outputs


def read_outputs(
    api: docker.APIClient, container_id: str, path: str, limit: int
) -> tuple[dict[str, bytes], str]:
    """The outputs directory's files and an error message ("" if none); runs in a thread."""
    try:
        chunks, _ = api.get_archive(container_id, path)
    except docker.errors.NotFound:
        return {}, ""
    except docker.errors.APIError as exc:
        return {}, f"reading the outputs in {path} failed: {engine_words(exc)}"
    data = bytearray()
    too_big = False
    # Read to the end even when over the limit: an abandoned stream leaks its connection.
    for chunk in chunks:
        if not too_big:
            data += chunk
            too_big = len(data) > limit
            if too_big:
                data = bytearray()
    if too_big:
        return {}, f"the outputs in {path} exceed {limit} bytes"
    try:
        return outputs_from_tar(bytes(data)), ""
    except Exception as exc:
        return {}, f"the outputs in {path} could not be read: {describe(exc)}"
