"""The images ``make image`` builds, for the tests that run them (built once per session).

They live in the worktree's own podman store, build/podman (the Makefile's IMAGE_STORE), so a
``make image`` before the tests makes this a cache hit; the base comes from debootstrap
(tools/image.sh), never from a registry, so the tests do not wait for a pull that cannot work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.engine import write_store_config

ROOT = Path(__file__).resolve().parents[2]
STORE = Path(os.environ.get("PORTER_BUNDLE_TEST_IMAGE_STORE", ROOT / "build" / "podman"))
IMAGE = "localhost/porter-bundle:dev"
AGENT_IMAGE = "localhost/porter-bundle-agent:dev"
BUILD_SECONDS = 1200


@dataclass(frozen=True)
class Images:
    server: str
    agent: str
    env: dict[str, str]

    def podman(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done


def build_images() -> Images:
    """Builds (or finds up to date) both images; raises with the build's output on failure."""
    if shutil.which("podman") is None:
        raise RuntimeError("podman is not installed")
    env = write_store_config(STORE, "overlay")
    env.update(IMAGE=IMAGE, AGENT_IMAGE=AGENT_IMAGE)
    env.setdefault("BASE_BUILD", "debootstrap")
    done = subprocess.run(
        [str(ROOT / "tools" / "image.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tools/image.sh failed:\n{done.stderr[-4000:]}")
    return Images(IMAGE, AGENT_IMAGE, env)
