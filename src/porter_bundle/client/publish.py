"""Pushing a bundle.json to an OCI registry (``porter-bundle bundles publish``).

Talks to the OCI registry directly (no server): the bundle lands in the layout
``porter publish`` (cnab-to-oci) uses, so Porter and this server can both pull it. The
invocation image must be in the same repository already (``podman push`` it there).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from porter_bundle import config
from porter_bundle.bundles.publish import Published, publish
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.errors import InvalidArgument, PorterBundleError
from porter_bundle.validation import MAX_BUNDLE_JSON_BYTES


def publish_file(
    path: Path,
    reference: str,
    *,
    insecure: bool = False,
    registry_config: str = "",
    out: Callable[[str], None],
) -> Published | None:
    """Publishes the bundle.json at ``path``; None on failure (the reasons given to ``out``)."""
    try:
        if path.stat().st_size > MAX_BUNDLE_JSON_BYTES:
            out(f"{path}: error: larger than {MAX_BUNDLE_JSON_BYTES} bytes")
            return None
        raw = path.read_bytes()
        auths = config.load_registry_auths(registry_config)
    except (OSError, ValueError) as exc:
        out(f"error: {exc}")
        return None
    host = reference.split("/", 1)[0]
    client = RegistryClient(insecure_hosts=frozenset({host} if insecure else ()), auths=auths)
    try:
        return publish(client, raw, reference)
    except InvalidArgument as exc:
        out(f"{path}: error: {exc.message}")
        for v in exc.violations:
            out(f"  {v.field}: {v.description}")
        return None
    except PorterBundleError as exc:
        out(f"error: {exc.message}")
        return None
    finally:
        client.close()
