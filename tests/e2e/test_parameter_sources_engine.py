"""Parameter sources (CNAB 810, io.cnab.parameter-sources) end to end with a busybox bundle:
Porter's porter-state fed back from one run's output into the next run's parameter, and the
precedence of a sourced value under sets, the installation's own values and overrides."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED
from porter.bundle.v1.value_set_pb2 import NamedValueSource, ParameterSet, ValueSource
from porter_bundle.service import Services
from tests.helpers import ended_run, engine_services

pytestmark = pytest.mark.slow  # real containers: seconds each
NS, NAME, REF = "dev", "stateful", "localhost:5000/stateful:v1"

# As Porter's runtime does in the image: porter-state arrives base64-encoded at its path,
# the image decodes it and writes the new state raw (the server encodes the file output).
RUN_SCRIPT = r"""#!/bin/sh
out=/cnab/app/outputs
mkdir -p $out
if [ -f /porter/state.b64 ]; then state=$(base64 -d /porter/state.b64); else state=none; fi
printf '%s' "$state" > $out/seen
printf '%s' "$LEVEL" > $out/level
printf 'state after %s %s' "$CNAB_ACTION" "$CNAB_REVISION" > $out/porter-state
"""


def bundle(image: str) -> dict:
    return {
        "schemaVersion": "v1.0.0",
        "name": "stateful",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {
            "porter-state": {"type": "string", "contentEncoding": "base64"},
            "str": {"type": "string"},
            "level": {"type": "integer", "default": 1},
        },
        "parameters": {
            "porter-state": {
                "definition": "porter-state",
                "destination": {"path": "/porter/state.b64"},
            },
            "level": {"definition": "level", "destination": {"env": "LEVEL"}},
        },
        "outputs": {
            "porter-state": {
                "definition": "porter-state",
                "path": "/cnab/app/outputs/porter-state",
            },
            "seen": {"definition": "str", "path": "/cnab/app/outputs/seen"},
            "level": {"definition": "level", "path": "/cnab/app/outputs/level"},
        },
        "custom": {
            "io.cnab.parameter-sources": {
                "porter-state": {
                    "priority": ["output"],
                    "sources": {"output": {"name": "porter-state"}},
                },
                "level": {
                    "priority": ["dependencies.output", "output"],
                    "sources": {
                        "dependencies.output": {"dependency": "db", "name": "level"},
                        "output": {"name": "level"},
                    },
                },
            }
        },
    }


@pytest.fixture
def services(store, podman_host) -> Services:
    return engine_services(store, podman_host)


def run(stub, action: str, **overrides) -> tuple[str, dict]:
    req = pb.ExecuteActionRequest(namespace=NS, name=NAME, action=action)
    if overrides:
        req.parameters.update(overrides)
    started = stub.ExecuteAction(req).run
    done = ended_run(stub, NS, NAME, started.id, timeout=60)
    assert done.state == RUN_STATE_SUCCEEDED, done.message
    outputs = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(namespace=NS, name=NAME, run_id=done.id)
    ).outputs
    return done.id, {o.name: json_format.MessageToDict(o.value) for o in outputs}


def state(values: dict) -> str:
    return base64.b64decode(values["porter-state"]).decode()


def test_porter_state_and_precedence(stub, test_image):
    image = test_image("stateful", RUN_SCRIPT)
    stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(bundle(image))))
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository=REF[:-3], tag="v1")
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))

    install, out = run(stub, "install", level=4)
    assert out["seen"] == "none" and state(out) == f"state after install {install}"
    # The next run gets the state the last one wrote, and the sourced level (the override
    # of the install was not remembered: the output fed it back).
    upgrade, out = run(stub, "upgrade")
    assert out["seen"] == f"state after install {install}" and out["level"] == 4
    assert state(out) == f"state after upgrade {upgrade}"
    _, out = run(stub, "upgrade")
    assert out["seen"] == f"state after upgrade {upgrade}"

    # Precedence, low to high: source < parameter set < the installation's own < override.
    stub.CreateParameterSet(
        pb.CreateParameterSetRequest(
            parameter_set=ParameterSet(
                namespace=NS,
                name="levels",
                parameters=[NamedValueSource(name="level", source=ValueSource(command="echo 6"))],
            )
        )
    )
    inst.parameter_sets.append("levels")
    stub.UpdateInstallation(
        pb.UpdateInstallationRequest(
            installation=inst, update_mask=FieldMask(paths=["parameter_sets"])
        )
    )
    _, out = run(stub, "upgrade")
    assert out["level"] == 6
    inst.parameters.update({"level": 7})
    stub.UpdateInstallation(
        pb.UpdateInstallationRequest(installation=inst, update_mask=FieldMask(paths=["parameters"]))
    )
    _, out = run(stub, "upgrade")
    assert out["level"] == 7
    last, out = run(stub, "upgrade", level=9)
    assert out["level"] == 9
    run_doc = stub.GetInstallationRun(
        pb.GetInstallationRunRequest(namespace=NS, name=NAME, run_id=last)
    ).run
    # The sourced state is recorded with the run like any other value.
    assert run_doc.parameters["porter-state"] == base64.b64encode(out["seen"].encode()).decode()
