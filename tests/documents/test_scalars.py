"""Numbers and booleans where Porter's Go types want a string (documents/scalars.py)."""

from __future__ import annotations

import json

import pytest

from porter_bundle.documents import read_one
from porter_bundle.documents.scalars import go_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (11, "11"),
        (True, "true"),
        (False, "false"),
        (1.5, "1.5"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (1e21, "1e+21"),
        ("as is", "as is"),
        (None, None),
    ],
)
def test_go_text_is_gos_percent_v(value, text):
    assert go_text(value) == text


INSTALLATION = b"""\
schemaVersion: 1.0.2
name: 1
namespace: 2024
labels: {thing: 1, on: true, ratio: 1.50, quoted: "7"}
bundle: {repository: r.io/app, version: 1.10}
parameterSets: [3]
parameters: {port: 8080, ratio: 1.50}
"""


def test_yaml_scalars_are_their_written_text_where_porter_wants_a_string():
    doc = read_one(INSTALLATION)
    assert (doc["name"], doc["namespace"]) == ("1", "2024")
    assert doc["labels"] == {"thing": "1", "on": "true", "ratio": "1.50", "quoted": "7"}
    assert doc["bundle"] == {"repository": "r.io/app", "version": "1.10"}
    assert doc["parameterSets"] == ["3"]
    assert doc["parameters"] == {"port": 8080, "ratio": 1.5}  # any JSON value: kept


def test_json_installations_keep_their_numbers():
    doc = {"schemaVersion": "1.0.2", "name": "a", "labels": {"thing": 1}, "bundle": {}}
    assert read_one(json.dumps(doc).encode())["labels"] == {"thing": 1}


def test_set_sources_by_version_and_kind():
    raw = "schemaVersion: {v}\nname: p\nparameters:\n  - {{name: a, source: {{value: 1.50}}}}\n"
    old = read_one(raw.format(v="1.0.1").encode())
    assert old["parameters"][0]["source"] == {"value": "1.5"}
    new = read_one(raw.format(v="1.1.0").encode())
    assert new["parameters"][0]["source"] == {"value": 1.5}
    creds = read_one(
        b'{"schemaVersion": "1.0.1", "name": "c", "credentials": '
        b'[{"name": "a", "source": {"value": 11}}]}'
    )
    assert creds["credentials"][0]["source"] == {"value": "11"}  # JSON too, as Porter


def test_operator_resources_read_their_spec():
    raw = (
        b"apiVersion: getporter.org/v1\nkind: ParameterSet\nmetadata: {name: x}\nspec:\n"
        b"  schemaVersion: 1.0.1\n  name: p\n  labels: {n: 5}\n"
        b"  parameters:\n    - {name: a, source: {value: 11}}\n"
    )
    doc = read_one(raw)
    assert doc["metadata"] == {"name": "x"}
    assert doc["spec"]["labels"] == {"n": "5"}
    assert doc["spec"]["parameters"][0]["source"] == {"value": "11"}
