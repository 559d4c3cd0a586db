"""Helpers for tests against a real OCI registry: bundles to publish, pushing them."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from porter_bundle.bundles.publish import Published, publish
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.executor import ContainerExecutor
from porter_bundle.service import Services
from porter_bundle.store import Database

RUN_SCRIPT = """#!/bin/sh
echo "action=$CNAB_ACTION installation=$CNAB_INSTALLATION_NAME greeting=$GREETING"
mkdir -p /cnab/app/outputs
printf '%s' "$GREETING" > /cnab/app/outputs/said
"""

BUNDLE: dict[str, Any] = {
    "schemaVersion": "v1.2.0",
    "name": "hello-oci",
    "version": "0.1.0",
    "description": "a bundle that lives in a registry",
    "maintainers": [{"name": "me", "email": "me@example.com"}],
    "keywords": ["test"],
    "invocationImages": [{"imageType": "docker", "image": "IMAGE"}],
    "definitions": {"greeting": {"type": "string", "default": "hello"}},
    "parameters": {"greeting": {"definition": "greeting", "destination": {"env": "GREETING"}}},
    "outputs": {
        "said": {
            "definition": "greeting",
            "path": "/cnab/app/outputs/said",
            "applyTo": ["install", "upgrade"],
        }
    },
}


def bundle_doc(image: str, **changes: Any) -> dict[str, Any]:
    """The test bundle with its invocation image set (and top-level fields changed)."""
    doc = copy.deepcopy(BUNDLE)
    doc["invocationImages"][0]["image"] = image
    doc.update(changes)
    return doc


def publish_doc(
    host: str, reference: str, doc: dict[str, Any], *, client: RegistryClient | None = None
) -> Published:
    """Publishes ``doc`` under ``reference`` on the plain-HTTP registry ``host``."""
    own = client is None
    client = client or RegistryClient(insecure_hosts=frozenset({host}))
    try:
        return publish(client, json.dumps(doc).encode(), reference)
    finally:
        if own:
            client.close()


def engine_services(store: Database, podman_host: str, registry: str) -> Iterator[Services]:
    """Services running real containers on Podman, pulling bundles and images from the
    plain-HTTP ``registry`` (for a ``services`` fixture: ``yield from``)."""
    insecure = frozenset({registry})
    with RegistryClient(insecure_hosts=insecure) as client:
        yield Services.create(
            store,
            executor=lambda: ContainerExecutor(podman_host, pull_insecure_registries=insecure),
            registry=client,
        )
