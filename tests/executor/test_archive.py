"""The tar archives the executor sends into containers and reads back out (no engine needed)."""

from __future__ import annotations

import io
import tarfile

import pytest

from porter_bundle.executor._archive import files_tar, normalize_path, outputs_from_tar


def members(archive: bytes) -> list[tuple[str, str, int]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(m.name, "dir" if m.isdir() else "file", m.mode) for m in tar]


def test_files_come_with_their_parent_directories() -> None:
    archive = files_tar({"/cnab/app/params/a": b"1", "/etc/x/y/z.json": b"{}", "/top": b"t"})
    assert members(archive) == [
        ("cnab", "dir", 0o755),
        ("etc", "dir", 0o755),
        ("cnab/app", "dir", 0o755),
        ("etc/x", "dir", 0o755),
        ("cnab/app/params", "dir", 0o755),
        ("etc/x/y", "dir", 0o755),
        ("cnab/app/params/a", "file", 0o644),
        ("etc/x/y/z.json", "file", 0o644),
        ("top", "file", 0o644),
    ]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        extracted = tar.extractfile("etc/x/y/z.json")
        assert extracted is not None
        assert extracted.read() == b"{}"


@pytest.mark.parametrize(
    ("path", "normalized"),
    [("/a/./b//c", "/a/b/c"), ("/a/../b", "/b"), ("//a", "/a"), ("/../a", "/a")],
)
def test_paths_are_normalized(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"relative": b""}, "not absolute"),
        ({"/": b""}, "root directory"),
        ({"/a/..": b""}, "root directory"),
        ({"/a/b": b"", "/a/b/c": b""}, "also the directory"),
    ],
)
def test_unusable_paths(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        files_tar(files)


def directory_tar(
    entries: dict[str, bytes | None], *, links: dict[str, str] | None = None
) -> bytes:
    """A tar like the engine's for a directory named ``outputs``: None marks a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def test_outputs_are_keyed_relative_to_the_directory() -> None:
    archive = directory_tar(
        {
            "outputs": None,
            "outputs/conn": b"c",
            "outputs/sub": None,
            "outputs/sub/file": b"f",
            "outputs/empty": b"",
        },
        links={"outputs/link": "conn"},
    )
    assert outputs_from_tar(archive) == {"conn": b"c", "sub/file": b"f", "empty": b""}


def test_an_empty_directory_has_no_outputs() -> None:
    assert outputs_from_tar(directory_tar({"outputs": None})) == {}


def test_members_outside_the_directory_are_ignored() -> None:
    archive = directory_tar({"outputs/../escape": b"x", "outputs": b"the directory is a file"})
    assert outputs_from_tar(archive) == {}


def test_podman_names_a_bind_mounted_directory_from_its_root() -> None:
    # What Podman 4 sends for GET /containers/{id}/archive of a directory that is a bind mount.
    archive = directory_tar({"": None, "/sub": None, "/sub/y": b"s", "/x": b"hi", "/../e": b"x"})
    assert outputs_from_tar(archive) == {"sub/y": b"s", "x": b"hi"}
