"""The "hello" bundle of examples/hello (the README's tour), read from there: its bundle.json
and the run script of its busybox invocation image."""

from __future__ import annotations

import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"
RUN_SCRIPT = (EXAMPLE / "run").read_text()
IMAGE = "localhost/hello:v0.1.0"
"""The invocation image bundle.json names (tests tag the image they build so)."""


def bundle_json(image: str) -> str:
    """The bundle with its invocation image."""
    doc = json.loads((EXAMPLE / "bundle.json").read_text())
    doc["invocationImages"][0]["image"] = image
    return json.dumps(doc, indent=2)
