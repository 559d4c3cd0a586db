"""The README's API examples run as written against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
REPO = README.parent


def examples() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- examples:begin -->\s*```sh\n(.*?)```\s*<!-- examples:end -->", text, re.S
    )
    assert block, "README has no examples block"
    return block.group(1)


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "buf").exists(), reason="needs make venv (buf)")
def test_readme_examples_run_against_a_server(server):
    script = examples().replace("127.0.0.1:3001", server.target)
    assert script.count(server.target) >= 3
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "porter.bundle.v1.PorterBundle" in out
    assert '"redacted": true' in out and "s3cret" not in out
    assert '"totalSize": "1"' in out
    assert "NOT_FOUND: no successful run yet" in out
    assert '"status": "SERVING"' in out


def architecture_tree() -> dict[str, set[str]]:
    """The README's Architecture block: top-level names under src/porter_bundle/ and the
    sub-folders named beneath each (4-space indent)."""
    text = README.read_text()
    section = text.split("## Architecture", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README's Architecture section has no tree"
    tree: dict[str, set[str]] = {}
    inside, parent = False, ""
    for line in block.group(1).splitlines():
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
