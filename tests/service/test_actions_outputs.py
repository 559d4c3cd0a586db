"""Output collection: the files a container left, typed and checked against their definitions.

How a run ends with them (FAILED naming a bad output, stored values) is in test_actions.py."""

from __future__ import annotations

import base64
from typing import Any

from porter_bundle.service.actions import collect_outputs
from tests.service.action_bundle import BUNDLE, GOOD_OUTPUTS


def with_outputs(definitions: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    return {**BUNDLE, "definitions": definitions, "outputs": outputs}


def test_the_actions_outputs_typed_with_defaults_and_sensitivity():
    values, problems = collect_outputs(BUNDLE, "install", GOOD_OUTPUTS)
    assert problems == []
    by = {v.name: v for v in values}
    assert by["conn"].value == "postgres://db" and by["port"].value == 5432
    assert by["secret"].sensitive and by["secret"].value == "out-secret-42"
    assert by["defaulted"].value == "fallback"
    # Outputs applying to other actions only are neither read nor missed.
    values, problems = collect_outputs(BUNDLE, "uninstall", {"conn": b"x"})
    assert {v.name for v in values} == {"conn", "defaulted"} and problems == []


def test_each_bad_output_is_one_problem():
    bundle = with_outputs(
        {"n": {"type": "integer", "maximum": 3}, "s": {"type": "string"}},
        {
            "big": {"definition": "n", "path": "/cnab/app/outputs/big"},
            "word": {"definition": "n", "path": "/cnab/app/outputs/word"},
            "bytes": {"definition": "s", "path": "/cnab/app/outputs/bytes"},
            "away": {"definition": "s", "path": "/tmp/away"},
            "gone": {"definition": "s", "path": "/cnab/app/outputs/gone"},
        },
    )
    files = {"big": b"7", "word": b"seven", "bytes": b"\xff\xfe"}
    values, problems = collect_outputs(bundle, "install", files)
    assert values == []
    assert len(problems) == 5
    text = "; ".join(problems)
    assert "'word' is not a valid integer" in text and "'bytes' is not UTF-8 text" in text
    assert "'away': its path /tmp/away is not under /cnab/app/outputs" in text
    assert "'gone' was not produced (expected at /cnab/app/outputs/gone)" in text
    assert any(p.startswith("output 'big' ") for p in problems)


def test_base64_outputs_keep_their_bytes():
    bundle = with_outputs(
        {"blob": {"type": "string", "contentEncoding": "base64"}},
        {"key": {"definition": "blob", "path": "/cnab/app/outputs/key"}},
    )
    [value], problems = collect_outputs(bundle, "install", {"key": b"\x00\xff"})
    assert problems == [] and value.value == base64.b64encode(b"\x00\xff").decode()
