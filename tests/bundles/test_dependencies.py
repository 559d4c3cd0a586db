"""CNAB dependency metadata (io.cnab.dependencies) and its version ranges."""

from __future__ import annotations

import json

import pytest

from porter_bundle.bundles.dependencies import (
    Dependency,
    DependencyError,
    dependencies,
    satisfies,
    version_key,
)
from tests.helpers import FIXTURES, cnab_validator


def test_the_spec_example_is_read_in_order():
    example = json.loads((FIXTURES / "cnab-spec/examples/500.01-dependencies.json").read_text())
    cnab_validator("dependencies.schema.json").validate(example)
    example["sequence"] = ["mysql"]
    assert dependencies({"custom": {"io.cnab.dependencies": example}}) == [
        Dependency("mysql", "somecloud/mysql", ("5.7.x",), prereleases=True),
        Dependency("blob", "somecloud/blob-storage"),
        Dependency("mongo", "somecloud/mongo", (), prereleases=True),
    ]
    assert dependencies({"name": "no-deps"}) == []


@pytest.mark.parametrize(
    ("version", "ranges", "prereleases", "expected"),
    [
        ("1.2.3", ["1.2.3"], False, True),
        ("v1.2.3", ["1.2.3"], False, True),
        ("1.2.4", ["1.2.3"], False, False),
        ("5.7.9", ["5.7.x"], False, True),
        ("5.8.0", ["5.7.x"], False, False),
        ("1.9.0", ["1.x"], False, True),
        ("2.0.0", ["1.x"], False, False),
        ("1.5.0", ["1.5.x - 3"], False, True),
        ("3.9.9", ["1.5.x - 3"], False, True),
        ("4.0.0", ["1.5.x - 3"], False, False),
        ("1.4.9", ["1.5.x - 3"], False, False),
        ("5.7.1-beta.1", ["5.7.x"], False, False),
        ("5.7.1-beta.1", ["5.7.x"], True, True),
        ("1.3.0", [">=1.2 <2"], False, True),
        ("2.0.0", [">=1.2 <2"], False, False),
        ("7.0.0", ["1.x", "7.x"], False, True),
        ("0.1.0", [], False, True),
        ("not-semver", [], False, False),
    ],
)
def test_version_ranges(version, ranges, prereleases, expected):
    assert satisfies(version, ranges, prereleases=prereleases) is expected


def test_versions_sort_by_semver_precedence():
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "v1.9.1", "1.2.0-alpha", "junk"]
    assert sorted(versions, key=version_key) == [
        "junk",
        "1.2.0-alpha",
        "1.2.0-rc.1",
        "1.2.0",
        "v1.9.1",
        "1.10.0",
    ]


@pytest.mark.parametrize(
    ("extension", "where"),
    [
        ("nope", "is not an object"),
        ({"sequence": ["ghost"], "requires": {}}, "sequence names no dependency 'ghost'"),
        ({"requires": {"db": {}}}, "requires.db.bundle"),
        ({"requires": {"db": {"bundle": "r/db", "version": {"ranges": ["1.2.3.4.5"]}}}}, "ranges"),
    ],
)
def test_malformed_metadata_says_where(extension, where):
    with pytest.raises(DependencyError, match=where):
        dependencies({"custom": {"io.cnab.dependencies": extension}})
