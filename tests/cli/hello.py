"""The busybox "hello" bundle the CLI tests and the README tour install (a real container)."""

from __future__ import annotations

import json
from typing import Any

RUN_SCRIPT = r"""#!/bin/sh
echo "$CNAB_ACTION of $CNAB_INSTALLATION_NAME: $GREETING"
out=/cnab/app/outputs
mkdir -p $out
case "$CNAB_ACTION" in
  install|upgrade) printf '%s' "$GREETING" > $out/greeting; printf '%s' "$PASSWORD" > $out/password ;;
  fail) echo "about to fail" >&2; exit 3 ;;
  hang) trap 'echo "got TERM"; exit 0' TERM; echo "hanging"; sleep 60 & wait ;;
  uninstall) echo "bye" ;;
esac
"""

BUNDLE: dict[str, Any] = {
    "schemaVersion": "v1.2.0",
    "name": "hello",
    "version": "0.1.0",
    "description": "says hello",
    "invocationImages": [{"imageType": "docker", "image": "IMAGE"}],
    "definitions": {
        "greeting": {"type": "string", "default": "hello"},
        "password": {"type": "string", "writeOnly": True},
    },
    "parameters": {"greeting": {"definition": "greeting", "destination": {"env": "GREETING"}}},
    "credentials": {"password": {"env": "PASSWORD", "required": True}},
    "outputs": {
        "greeting": {
            "definition": "greeting",
            "path": "/cnab/app/outputs/greeting",
            "applyTo": ["install", "upgrade"],
        },
        "password": {
            "definition": "password",
            "path": "/cnab/app/outputs/password",
            "applyTo": ["install", "upgrade"],
        },
    },
    "actions": {"fail": {"stateless": True, "modifies": False}, "hang": {"stateless": True}},
}


def bundle_json(image: str) -> str:
    """The bundle with its invocation image."""
    doc = json.loads(json.dumps(BUNDLE))
    doc["invocationImages"][0]["image"] = image
    return json.dumps(doc, indent=2)
