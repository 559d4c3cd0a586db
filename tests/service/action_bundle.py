"""The bundle, outputs and value sources the action tests (test_actions*.py) share."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.value_set_pb2 import ValueSource

NS, NAME, REF = "dev", "app", "localhost:5000/app:v1.0.0"

BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "app",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/app-installer:v1"}],
    "definitions": {
        "level": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
        "color": {"type": "string", "enum": ["red", "blue"]},
        "name": {"type": "string", "pattern": "^[a-z]+$"},
        "password": {"type": "string", "writeOnly": True},
        "config": {"type": "object"},
        "str": {"type": "string"},
        "port": {"type": "integer"},
        "secret-out": {"type": "string", "writeOnly": True},
        "with-default": {"type": "string", "default": "fallback"},
    },
    "parameters": {
        "level": {"definition": "level", "destination": {"env": "LEVEL"}},
        "color": {"definition": "color", "destination": {"path": "/cnab/app/color.txt"}},
        "name": {"definition": "name", "required": True, "destination": {}},
        "password": {"definition": "password", "destination": {"env": "PASSWORD"}},
        "config": {
            "definition": "config",
            "destination": {"env": "CONFIG"},
            "applyTo": ["install"],
        },
    },
    "credentials": {
        "token": {"env": "TOKEN", "required": True},
        "kubeconfig": {"path": "/home/nonroot/.kube/config", "applyTo": ["install", "upgrade"]},
    },
    "outputs": {
        "conn": {"definition": "str", "path": "/cnab/app/outputs/conn"},
        "port": {
            "definition": "port",
            "path": "/cnab/app/outputs/port",
            "applyTo": ["install", "upgrade"],
        },
        "secret": {
            "definition": "secret-out",
            "path": "/cnab/app/outputs/secret",
            "applyTo": ["install"],
        },
        "defaulted": {"definition": "with-default", "path": "/cnab/app/outputs/defaulted"},
    },
    "actions": {"status": {"stateless": True, "modifies": False}, "backup": {"modifies": False}},
}

GOOD_OUTPUTS = {"conn": b"postgres://db", "port": b"5432", "secret": b"out-secret-42"}


def src(**kind: Any) -> ValueSource:
    """A value source: ``value=...`` (any JSON value) or one of the other kinds."""
    if "value" in kind:
        s = ValueSource()
        json_format.ParseDict(kind["value"], s.value)
        return s
    return ValueSource(**kind)


def create_plain_app(stub: Any, name: str = "app") -> None:
    """Registers BUNDLE without parameters, credentials or outputs, and installation ``name``
    of it in NS (over ``stub``, a PorterBundle stub)."""
    plain = {**BUNDLE, "parameters": {}, "credentials": {}, "outputs": {}}
    stub.CreateBundle(pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(plain)))
    stub.CreateInstallation(
        pb.CreateInstallationRequest(
            installation=Installation(
                namespace=NS,
                name=name,
                bundle=BundleReference(repository="localhost:5000/app", tag="v1.0.0"),
            )
        )
    )
