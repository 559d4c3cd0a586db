"""Withheld parameters: the values of sensitive parameters kept out of the stored Installation
message (encrypted beside it, in ``installations.secret_parameters``) and named in its
``sensitive_parameters``. The rules are in :mod:`porter_bundle.service.installations`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from porter.bundle.v1.installation_pb2 import Installation
from porter_bundle.bundles import cnab

if TYPE_CHECKING:
    from porter_bundle.service.bundles import ResolvedBundle


def sensitive_names(bundle: ResolvedBundle | None) -> frozenset[str] | None:
    """The parameters a bundle marks sensitive (``writeOnly``); None when the bundle is unknown."""
    if bundle is None:
        return None
    return frozenset(p.name for p in cnab.parameters(bundle.document) if p.sensitive)


def withhold(
    inst: Installation, kept: Mapping[str, Any], sensitive: frozenset[str] | None
) -> dict[str, Any]:
    """Moves the sensitive values out of ``inst.parameters`` (``kept``, values withheld before,
    joining them first) and names them in ``sensitive_parameters``; returns them. Sensitive:
    what the bundle marks so (``sensitive``; None when the bundle is not known), and what was
    withheld before (named in ``inst.sensitive_parameters`` or ``kept``): once withheld, a
    parameter's value stays withheld until it is removed from the installation."""
    names = (sensitive or frozenset()) | frozenset(inst.sensitive_parameters) | frozenset(kept)
    if kept:
        inst.parameters.update(kept)
    secrets: dict[str, Any] = {}
    for name in sorted(n for n in names if n in inst.parameters.fields):
        secrets[name] = json_format.MessageToDict(inst.parameters.fields[name])
        del inst.parameters.fields[name]
    del inst.sensitive_parameters[:]
    inst.sensitive_parameters.extend(sorted(secrets))
    return secrets


def encoded_secrets(secrets: Mapping[str, Any]) -> bytes | None:
    """The stored form of withheld values (compact JSON; None when there are none)."""
    if not secrets:
        return None
    return json.dumps(dict(secrets), sort_keys=True, separators=(",", ":")).encode()


def decoded_secrets(raw: bytes | None) -> dict[str, Any]:
    """Withheld values from their stored form."""
    if raw is None:
        return {}
    values: dict[str, Any] = json.loads(raw)
    return values
