"""The CNAB runtime contract: what an invocation image's container gets.

``/cnab/app/run`` is the image's own; the server gives it the ``CNAB_*`` and
``PORTER_INSTALLATION_*`` variables, the parameters and credentials at their destinations
(``CNAB_P_<NAME>`` for a parameter without one), ``/cnab/bundle.json``, ``/cnab/claim.json``,
``/cnab/app/image-map.json`` and, for a relocated bundle, ``/cnab/app/relocation-mapping.json``,
the label naming its installation, the network mode and the run's time limit. The image is
the pinned one (:mod:`porter_bundle.bundles.images`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.run_pb2 import Run
from porter_bundle.bundles import cnab
from porter_bundle.bundles.images import PinnedImage
from porter_bundle.executor import LABEL_INSTALLATION, ContainerSpec
from porter_bundle.service.actions.settings import ActionSettings
from porter_bundle.service.bundles import ResolvedBundle
from porter_bundle.service.claim_documents import CLAIMS_VERSION, CUSTOM_KEY, claim_document
from porter_bundle.service.inputs import ResolvedInputs, render


def container_spec(
    inst: Installation,
    resolved: ResolvedBundle,
    bundle: dict[str, Any],
    action: str,
    run: Run,
    inputs: ResolvedInputs,
    settings: ActionSettings,
    image: PinnedImage,
    *,
    claim: Mapping[str, Any] | None = None,
) -> ContainerSpec:
    """The container that runs ``action`` of ``bundle`` for ``run`` with its checked inputs.

    ``claim`` is the run's recorded CNAB claim; ``/cnab/claim.json`` is that claim with every
    parameter value the run uses (None: a claim built from the run, its own revision)."""
    full_claim = _claim(inst, run, bundle, action, inputs, claim)
    env = {
        "CNAB_ACTION": action,
        "CNAB_INSTALLATION_NAME": inst.name,
        "CNAB_BUNDLE_NAME": str(bundle.get("name", "")),
        "CNAB_BUNDLE_VERSION": str(bundle.get("version", "")),
        "CNAB_REVISION": str(full_claim["revision"]),
        "CNAB_CLAIMS_VERSION": CLAIMS_VERSION,
        "PORTER_INSTALLATION_NAMESPACE": inst.namespace,
        "PORTER_INSTALLATION_NAME": inst.name,
        "PORTER_INSTALLATION_ID": inst.id,
    }
    files: dict[str, bytes] = {
        "/cnab/bundle.json": resolved.content.encode(),
        "/cnab/app/image-map.json": json.dumps(_image_map(bundle)).encode(),
        "/cnab/claim.json": json.dumps(full_claim).encode(),
        **image.mapping_file(),
    }
    for p in cnab.parameters(bundle):
        if p.name not in inputs.parameters:
            continue
        text = render(inputs.parameters[p.name])
        if p.env:
            env[p.env] = text
        if p.path:
            files[p.path] = text.encode()
        if not p.env and not p.path:
            env[f"CNAB_P_{p.name.upper()}"] = text
    for c in cnab.credentials(bundle):
        if c.name not in inputs.credentials:
            continue
        if c.env:
            env[c.env] = inputs.credentials[c.name]
        if c.path:
            files[c.path] = inputs.credentials[c.name].encode()
    return ContainerSpec(
        run_id=run.id,
        image=image.reference,
        image_digest=image.digest,
        env=env,
        files=files,
        labels={LABEL_INSTALLATION: f"{inst.namespace}/{inst.name}"},
        network=settings.network,
        timeout_seconds=settings.run_timeout_seconds,
        outputs_dir=cnab.OUTPUTS_DIR
        if any(o.applies_to(action) for o in cnab.outputs(bundle))
        else "",
    )


def _image_map(bundle: dict[str, Any]) -> dict[str, Any]:
    """``/cnab/app/image-map.json``: the bundle's images by name."""
    images = bundle.get("images") or {}
    return {name: img for name, img in images.items() if isinstance(img, dict)}


def _claim(
    inst: Installation,
    run: Run,
    bundle: dict[str, Any],
    action: str,
    inputs: ResolvedInputs,
    recorded: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``/cnab/claim.json``: the CNAB claim of this run, with every parameter value."""
    if recorded is None:
        addressed = Run()
        addressed.CopyFrom(run)
        addressed.namespace, addressed.installation = inst.namespace, inst.name
        return claim_document(
            addressed, action, bundle, revision=run.id, parameters=inputs.parameters
        )
    full = {**recorded, "parameters": dict(inputs.parameters)}
    custom = {k: v for k, v in (full.pop("custom", None) or {}).items() if k != CUSTOM_KEY}
    if custom:
        full["custom"] = custom
    return full


__all__ = ["CLAIMS_VERSION", "container_spec"]
