"""The CNAB runtime contract: the container a run gets, built without a server.

A whole install through the server checks the same contract end to end (test_actions.py)."""

from __future__ import annotations

import json

from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.run_pb2 import Run
from porter_bundle.bundles.images import pin_invocation_image
from porter_bundle.executor import LABEL_INSTALLATION
from porter_bundle.service import ActionSettings
from porter_bundle.service.actions.contract import CLAIMS_VERSION, container_spec
from porter_bundle.service.bundles import ResolvedBundle
from porter_bundle.service.inputs import ResolvedInputs
from tests.helpers import cnab_validator
from tests.service.action_bundle import BUNDLE, NAME, NS, REF

SETTINGS = ActionSettings(
    run_timeout_seconds=42,
    max_concurrent_runs=1,
    cancel_grace_seconds=1,
    network="bridge",
    engine_retry_seconds=60,
)


def spec_for(action: str, bundle: dict[str, object], inputs: ResolvedInputs):
    inst = Installation(namespace=NS, name=NAME, id="inst-1")
    resolved = ResolvedBundle(REF, "sha256:" + "0" * 64, json.dumps(bundle))
    image = pin_invocation_image(resolved.document, resolved.relocation_map)
    return container_spec(
        inst, resolved, resolved.document, action, Run(id="run-1"), inputs, SETTINGS, image
    )


def test_environment_files_and_limits():
    bundle = {**BUNDLE, "images": {"db": {"image": "localhost/db:1"}, "bad": "not-an-image"}}
    inputs = ResolvedInputs(
        parameters={"name": "web", "level": 7, "color": "red"},
        sensitive=frozenset(),
        credentials={"token": "tok", "kubeconfig": "cfg"},
    )
    spec = spec_for("install", bundle, inputs)
    assert spec.run_id == "run-1" and spec.image == "localhost/app-installer:v1"
    assert spec.env["CNAB_CLAIMS_VERSION"] == CLAIMS_VERSION
    assert spec.env["CNAB_REVISION"] == "run-1" and spec.env["PORTER_INSTALLATION_ID"] == "inst-1"
    assert spec.env["CNAB_P_NAME"] == "web" and spec.env["LEVEL"] == "7"
    assert spec.files["/cnab/app/color.txt"] == b"red"
    assert spec.env["TOKEN"] == "tok" and spec.files["/home/nonroot/.kube/config"] == b"cfg"
    assert json.loads(spec.files["/cnab/app/image-map.json"]) == {"db": {"image": "localhost/db:1"}}
    claim = json.loads(spec.files["/cnab/claim.json"])
    assert claim["schemaVersion"] == CLAIMS_VERSION and claim["parameters"] == inputs.parameters
    assert claim["namespace"] == NS and claim["created"].endswith("Z")
    assert spec.labels == {LABEL_INSTALLATION: f"{NS}/{NAME}"}
    assert spec.network == "bridge" and spec.timeout_seconds == 42
    assert spec.outputs_dir == "/cnab/app/outputs"
    # Nothing pinned, nothing relocated: the image as named, no relocation-mapping.json.
    assert spec.image_digest == "" and "/cnab/app/relocation-mapping.json" not in spec.files


def test_no_outputs_directory_when_no_output_applies():
    bundle = {**BUNDLE, "outputs": {}}
    spec = spec_for("status", bundle, ResolvedInputs({}, frozenset(), {}))
    assert spec.outputs_dir == "" and spec.env["CNAB_ACTION"] == "status"
    cnab_validator("claim.schema.json").validate(json.loads(spec.files["/cnab/claim.json"]))


def test_recorded_claim_gets_every_value_and_gives_the_revision():
    inputs = ResolvedInputs({"name": "web", "password": "pw"}, frozenset({"password"}), {})
    inst = Installation(namespace=NS, name=NAME, id="inst-1")
    resolved = ResolvedBundle(REF, "sha256:" + "0" * 64, json.dumps(BUNDLE))
    recorded = {
        "id": "run-2",
        "revision": "run-1",
        "action": "status",
        "parameters": {"name": "web"},
        "custom": {"sh.porter-bundle": {"sensitiveParameters": ["password"]}, "x": 1},
    }
    spec = container_spec(
        inst,
        resolved,
        resolved.document,
        "status",
        Run(id="run-2"),
        inputs,
        SETTINGS,
        pin_invocation_image(resolved.document),
        claim=recorded,
    )
    claim = json.loads(spec.files["/cnab/claim.json"])
    assert spec.env["CNAB_REVISION"] == "run-1" == claim["revision"]
    assert claim["parameters"] == {"name": "web", "password": "pw"}
    assert claim["custom"] == {"x": 1} and recorded["parameters"] == {"name": "web"}
