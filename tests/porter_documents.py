"""Every Porter document among the vendored fixtures, and what Porter does with it.

Porter's test data (tests/testdata, pkg/storage/testdata) and the Porter operator's
resources (their ``spec`` is a Porter document). A test checks that this table names
every YAML/JSON file in those folders, so a new fixture cannot go untested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter_bundle.documents import DocumentKind
from tests.helpers import FIXTURES

PORTER = FIXTURES / "porter"
OPERATOR = FIXTURES / "operator"
FOLDERS = (PORTER / "tests" / "testdata", PORTER / "pkg" / "storage" / "testdata", OPERATOR)
SUFFIXES = (".yaml", ".yml", ".json")

INSTALLATION = DocumentKind.INSTALLATION
CREDENTIAL_SET = DocumentKind.CREDENTIAL_SET
PARAMETER_SET = DocumentKind.PARAMETER_SET


@dataclass(frozen=True)
class Expect:
    """Accepted (``reason`` empty), or refused with that reason, naming ``field`` and saying ``says``."""

    kind: DocumentKind
    """The kind of document, or the Apply call it is sent to when it is none."""
    reason: str = ""
    field: str = ""
    says: tuple[str, ...] = ()
    warns: tuple[str, ...] = ()
    """Accepted with exactly these warnings."""

    @property
    def accepted(self) -> bool:
        return not self.reason


def _version(found: str, supported: str) -> tuple[str, str, tuple[str, ...]]:
    return "UNSUPPORTED_SCHEMA_VERSION", "schemaVersion", (found, supported)


EXPECTED: dict[str, Expect] = {
    "porter/tests/testdata/creds/alt-mybuns.yaml": Expect(CREDENTIAL_SET),
    "porter/tests/testdata/creds/mybuns.yaml": Expect(CREDENTIAL_SET),
    "porter/tests/testdata/creds/invalid-schema.yaml": Expect(
        CREDENTIAL_SET, *_version("0.38.5", "1.0.1")
    ),
    "porter/tests/testdata/installations/mybuns.yaml": Expect(INSTALLATION),
    "porter/tests/testdata/installations/myenv.yaml": Expect(INSTALLATION),
    "porter/tests/testdata/installations/invalid-schema.yaml": Expect(
        INSTALLATION, *_version("0.38.5", "1.0.2")
    ),
    "porter/tests/testdata/params/mybuns.yaml": Expect(PARAMETER_SET),
    "porter/tests/testdata/params/myenv.yaml": Expect(PARAMETER_SET),
    "porter/tests/testdata/params/invalid-schema.yaml": Expect(
        PARAMETER_SET, *_version("0.38.5", "1.0.1 or 1.1.0")
    ),
    # Porter's stored form: "status" is server-owned and ignored.
    "porter/pkg/storage/testdata/paramset.json": Expect(PARAMETER_SET),
    # "myparam=foo": not JSON (Porter's JSON reader fails); YAML reads it as a bare string.
    "porter/pkg/storage/testdata/paramset_bad.json": Expect(
        PARAMETER_SET, "WRONG_DOCUMENT_TYPE", "document", ("mapping", "string")
    ),
    "operator/api/v1/testdata/credential-set.yaml": Expect(CREDENTIAL_SET),
    "operator/api/v1/testdata/installation.yaml": Expect(INSTALLATION),
    "operator/api/v1/testdata/parameter-set.yaml": Expect(PARAMETER_SET),
    "operator/config/samples/_v1_credentialset.yaml": Expect(CREDENTIAL_SET),
    "operator/config/samples/porter-hello.yaml": Expect(INSTALLATION),
    # Two entries named "test-secret": the last one wins, as in Porter, with a warning.
    "operator/config/samples/_v1_parameterset.yaml": Expect(
        PARAMETER_SET,
        warns=(
            "spec.parameters[1]: 'test-secret' is also listed at spec.parameters[0]; "
            "the last entry wins, as in Porter",
        ),
    ),
    # The operator's CRD is a Kubernetes resource, not a Porter document.
    "operator/config/crd/bases/getporter.org_installationoutputs.yaml": Expect(
        INSTALLATION, "WRONG_DOCUMENT_TYPE", "document", ("CustomResourceDefinition",)
    ),
}


def fixture_files() -> list[Path]:
    """Every YAML/JSON file in the fixture folders."""
    return sorted(p for d in FOLDERS for p in d.rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def rel(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


def apply(stub: Any, kind: DocumentKind, document: bytes, **kw: Any) -> Any:
    """The Apply call of ``kind`` with ``document``."""
    if kind is DocumentKind.INSTALLATION:
        return stub.ApplyInstallation(pb.ApplyInstallationRequest(document=document, **kw))
    if kind is DocumentKind.CREDENTIAL_SET:
        return stub.ApplyCredentialSet(pb.ApplyCredentialSetRequest(document=document, **kw))
    return stub.ApplyParameterSet(pb.ApplyParameterSetRequest(document=document, **kw))


ACCEPTED = [FIXTURES / name for name, e in EXPECTED.items() if e.accepted]
REFUSED = [FIXTURES / name for name, e in EXPECTED.items() if not e.accepted]


# --- what applying the fixture installations needs --------------------------------------------


def bundle_json(name: str, version: str, parameters: dict[str, str]) -> str:
    """A minimal bundle.json with these parameters (name -> definition: str, int or secret)."""
    return json.dumps(
        {
            "schemaVersion": "v1.0.0",
            "name": name,
            "version": version,
            "invocationImages": [{"imageType": "docker", "image": f"localhost/{name}:v1"}],
            "definitions": {
                "str": {"type": "string"},
                "int": {"type": "integer"},
                "secret": {"type": "string", "writeOnly": True},
            },
            "parameters": {
                p: {"definition": d, "destination": {"env": p.upper()}}
                for p, d in parameters.items()
            },
            "credentials": {"username": {"env": "USERNAME"}},
        }
    )


# The bundles the fixture installations name (reference -> parameters).
FIXTURE_BUNDLES = {
    "localhost:5000/mybuns:v0.1.2": {"password": "secret", "log_level": "int"},
    "localhost:5000/myenv:v0.1.0": {"logLevel": "str"},
    "ghcr.io/getporter/porter-hello:v0.1.1": {"name": "str"},
    "ghcr.io/getporter/test/porter-hello:v0.2.0": {"name": "str"},
}


def prepare_fixture_world(stub: Any) -> None:
    """Registers the fixture installations' bundles, and the one set Porter's data lacks
    (myenv's credential set); the mybuns credential set reads env USER: set it."""
    for reference, params in FIXTURE_BUNDLES.items():
        repo, _, tag = reference.rpartition(":")
        stub.CreateBundle(
            pb.CreateBundleRequest(
                reference=reference,
                bundle_json=bundle_json(repo.rsplit("/", 1)[-1], tag[1:], params),
            )
        )
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                name="myenv",
                credentials=[NamedValueSource(name="username", source=ValueSource(env="USER"))],
            )
        )
    )
