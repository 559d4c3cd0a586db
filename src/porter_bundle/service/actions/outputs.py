"""A run's outputs: read from the files its container left in ``/cnab/app/outputs``, typed
and checked against their definitions (a missing one takes its default, else it is a problem)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from porter_bundle.bundles import cnab
from porter_bundle.service.inputs import _check
from porter_bundle.service.runs import OutputValue


def collect_outputs(
    bundle: dict[str, Any], action: str, files: Mapping[str, bytes]
) -> tuple[list[OutputValue], list[str]]:
    """Typed outputs of ``action`` from the files a container left, and a problem per bad one."""
    values: list[OutputValue] = []
    problems: list[str] = []
    prefix = cnab.OUTPUTS_DIR + "/"
    for d in cnab.outputs(bundle):
        if not d.applies_to(action):
            continue
        if not d.path.startswith(prefix):
            problems.append(f"output {d.name!r}: its path {d.path} is not under {cnab.OUTPUTS_DIR}")
            continue
        raw = files.get(d.path[len(prefix) :])
        if raw is None:
            if "default" in d.schema:
                default = d.schema["default"]
                values.append(
                    OutputValue(d.name, default, d.type, d.sensitive, internal=d.internal)
                )
            else:
                problems.append(f"output {d.name!r} was not produced (expected at {d.path})")
            continue
        value, problem = _output_value(d, raw)
        if problem:
            problems.append(problem)
        else:
            # Porter hands out the bytes the bundle wrote (a base64 output: its base64 text).
            written = value if isinstance(value, str) else raw.decode()
            values.append(OutputValue(d.name, value, d.type, d.sensitive, written, d.internal))
    return values, problems


def _output_value(d: cnab.OutputDef, raw: bytes) -> tuple[Any, str]:
    """The value of one output file, decoded as its definition says, or a problem."""
    if d.schema.get("contentEncoding") == "base64":
        return base64.b64encode(raw).decode(), ""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None, f"output {d.name!r} is not UTF-8 text"
    if d.type in ("", "string"):
        value: Any = text
    else:
        try:
            value = json.loads(text)
        except ValueError:
            return None, f"output {d.name!r} is not a valid {d.type}"
    problem = _check(value, d.schema, d.sensitive)
    return (None, f"output {d.name!r} {problem}") if problem else (value, "")


__all__ = ["collect_outputs"]
