"""The README's tour and the docs' API examples run as written against a live server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from porter_bundle.service import Services
from tests.doc_blocks import REPO, block, inline_spans, script_env
from tests.helpers import engine_services

README = REPO / "README.md"
VARYING = ("runId", "digest", "createTime")


def run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Runs a block with bash -euo pipefail from the repository root."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def services(store, request) -> Services:
    """A container engine behind the server for the tests that ask for one (the tour)."""
    if "podman_host" not in request.fixturenames:
        return Services.create(store)
    return engine_services(store, request.getfixturevalue("podman_host"))


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "buf").exists(), reason="needs make venv (buf)")
def test_api_examples_run_against_a_server(server, tmp_path: Path):
    script = block("docs/api.md", "examples").replace("127.0.0.1:3001", server.target)
    assert script.count(server.target) >= 3
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "porter.bundle.v1.PorterBundle" in out
    assert '"redacted": true' in out and "s3cret" not in out
    assert '"totalSize": "1"' in out
    assert "NOT_FOUND: no successful run yet" in out
    assert '"status": "SERVING"' in out


def _steady(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in o.items() if k not in VARYING} for o in outputs]


@pytest.mark.slow
def build_example_image(podman_service, test_image) -> None:
    """The README's own `podman build` of examples/hello, as written, in the test Podman's
    store: its busybox base is one made from Debian's busybox-static (no registry here)."""
    (build,) = [s for s in inline_spans("README.md") if s.startswith("podman build ")]
    base = re.search(r"^FROM (\S+)", (REPO / "examples/hello/Containerfile").read_text(), re.M)
    assert base, "examples/hello/Containerfile has no FROM"
    podman_service.podman("tag", test_image("busybox-base", "#!/bin/sh\n"), base.group(1))
    podman_service.podman(*shlex.split(build)[1:], "--pull=never")


def test_readme_tour_runs_as_written(server, podman_host, podman_service, test_image, tmp_path):
    build_example_image(podman_service, test_image)
    script = block("README.md", "tour").replace("127.0.0.1:3001", server.target)
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "install of hello: hello\n" in out  # --follow: the container's own output
    assert "upgrade of hello: bonjour" not in out  # the upgrade waits, printing states only
    assert "s3cret" not in out + result.stderr
    assert "deleted installation dev/hello" in out
    lines = out.splitlines()
    assert "hello" in lines and "bonjour" in lines  # output show, before and after the upgrade
    printed = json.loads(re.search(r"^\[\n.*?^\]$", out, re.S | re.M).group(0))  # type: ignore[union-attr]
    shown = json.loads(block("README.md", "tour-json", "json"))
    assert _steady(printed) == _steady(shown)
    assert [set(o) for o in printed] == [set(s) for s in shown]  # the varying fields too


def architecture_tree() -> dict[str, set[str]]:
    """The README's Architecture block: top-level names under src/porter_bundle/ and the
    sub-folders named beneath each (4-space indent)."""
    text = README.read_text()
    section = text.split("## Architecture", 1)[1]
    drawn = re.search(r"```text\n(.*?)```", section, re.S)
    assert drawn, "README's Architecture section has no tree"
    tree: dict[str, set[str]] = {}
    inside, parent = False, ""
    for line in drawn.group(1).splitlines():
        if line.startswith("src/porter_bundle/"):
            inside = True
            continue
        if inside and not line.startswith("  "):
            break
        if not inside or not line.strip() or line.startswith(" " * 6):
            continue  # continuation lines of a description
        names = re.split(r"\s{2,}", line.strip())[0]
        if line.startswith("    "):
            tree[parent].add(names.rstrip("/"))
            continue
        for name in names.split(", "):
            parent = name.rstrip("/")
            tree.setdefault(parent, set())
    return tree


def test_architecture_tree_names_every_package_and_module():
    src = REPO / "src" / "porter_bundle"
    tree = architecture_tree()
    actual = {
        p.name
        for p in src.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
    }
    assert set(tree) == actual, "README's Architecture tree is out of date with src/porter_bundle"
    for parent, children in tree.items():
        for child in children:
            assert (src / parent / child / "__init__.py").exists(), (
                f"{parent}/{child} is not a package"
            )
