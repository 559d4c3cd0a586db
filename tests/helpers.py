"""Test helpers: reading rich error details off a failed call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""Upstream files the tests read (CNAB spec, cnab-to-oci, Porter, the operator): see its README."""


@dataclass
class RpcFailure:
    """What a client sees of a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)


def failure(call: Callable[..., Any], *args: Any, **kwargs: Any) -> RpcFailure:
    """Runs a call that must fail and returns its status and details."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as err:
        status = status_pb2.Status()
        for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key == "grpc-status-details-bin":
                status.ParseFromString(value)
        result = RpcFailure(err.code(), err.details())  # type: ignore[attr-defined]
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                result.reason, result.domain, result.metadata = (
                    info.reason,
                    info.domain,
                    dict(info.metadata),
                )
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                result.violations = {v.field: v.description for v in bad.field_violations}
        return result
    raise AssertionError("the call succeeded but was expected to fail")


def sensitive_bundle(name: str = "vault") -> dict[str, Any]:
    """A bundle.json (version 1.0.0) with a sensitive parameter ``password`` (``writeOnly``) and
    a plain optional one, ``color``."""
    return {
        "schemaVersion": "v1.0.0",
        "name": name,
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": f"localhost/{name}-installer:v1"}],
        "definitions": {
            "secret": {"type": "string", "writeOnly": True},
            "text": {"type": "string"},
        },
        "parameters": {
            "password": {"definition": "secret", "destination": {"env": "PASSWORD"}},
            "color": {"definition": "text", "destination": {"env": "COLOR"}, "required": False},
        },
    }
