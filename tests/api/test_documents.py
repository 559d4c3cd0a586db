"""Apply* and Export* of Porter documents through the real server (a fake container engine).

Every fixture document is applied as Porter would take it or refuse it; a refused one
changes nothing; exporting an applied resource and applying the export changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import RUN_STATE_PENDING, RUN_STATE_RUNNING, RUN_STATE_SUCCEEDED
from porter.bundle.v1.value_set_pb2 import ValueSource
from porter_bundle.documents import DocumentKind, SchemaCheck
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from tests.fake_executor import FakeExecutor
from tests.helpers import failure, wait_until
from tests.porter_documents import (
    ACCEPTED,
    EXPECTED,
    REFUSED,
    apply,
    prepare_fixture_world,
    rel,
)

CREATED, UPDATED, UNCHANGED = (
    pb.APPLY_OUTCOME_CREATED,
    pb.APPLY_OUTCOME_UPDATED,
    pb.APPLY_OUTCOME_UNCHANGED,
)
FORMATS = {"yaml": pb.DOCUMENT_FORMAT_YAML, "json": pb.DOCUMENT_FORMAT_JSON}


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def services(store, fake, tmp_path) -> Services:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "test-secret").write_text("from-the-store")
    (secrets / "param_secret").write_text("from-the-store")
    from porter_bundle.service.sources import DirectorySecretStore

    return Services.create(
        store,
        executor=lambda: fake,
        action_settings=ActionSettings(
            run_timeout_seconds=30,
            max_concurrent_runs=2,
            cancel_grace_seconds=10,
            network=None,
            engine_retry_seconds=60,
        ),
        secrets=DirectorySecretStore(secrets),
    )


@pytest.fixture
def porter_world(stub, monkeypatch):
    monkeypatch.setenv("USER", "porter-user")
    prepare_fixture_world(stub)


def export(
    stub, kind: DocumentKind, namespace: str, name: str, fmt: str = "yaml", *, reveal=False
) -> str:
    req = {"namespace": namespace, "name": name, "format": FORMATS[fmt]}
    if kind is DocumentKind.INSTALLATION:
        return stub.ExportInstallation(
            pb.ExportInstallationRequest(**req, reveal_sensitive=reveal)
        ).document
    if kind is DocumentKind.CREDENTIAL_SET:
        return stub.ExportCredentialSet(pb.ExportCredentialSetRequest(**req)).document
    return stub.ExportParameterSet(pb.ExportParameterSetRequest(**req)).document


def resource_of(kind: DocumentKind, resp: Any) -> Any:
    return {
        DocumentKind.INSTALLATION: lambda: resp.installation,
        DocumentKind.CREDENTIAL_SET: lambda: resp.credential_set,
        DocumentKind.PARAMETER_SET: lambda: resp.parameter_set,
    }[kind]()


def wait_idle(stub, namespace: str, name: str, timeout: float = 20.0) -> None:
    request = pb.ListInstallationRunsRequest(namespace=namespace, name=name)
    wait_until(
        lambda: all(
            r.state not in (RUN_STATE_PENDING, RUN_STATE_RUNNING)
            for r in stub.ListInstallationRuns(request).runs
        ),
        f"the runs of {namespace}/{name} to end",
        timeout=timeout,
    )


def everything(stub) -> tuple[Any, ...]:
    """Every resource, to show that a refused document changed nothing."""
    return (
        stub.ListInstallations(pb.ListInstallationsRequest(all_namespaces=True)),
        stub.ListCredentialSets(pb.ListCredentialSetsRequest(all_namespaces=True)),
        stub.ListParameterSets(pb.ListParameterSetsRequest(all_namespaces=True)),
    )


# --- the fixtures ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", REFUSED, ids=rel)
def test_refused_fixture_changes_nothing(stub, porter_world, path: Path):
    expect = EXPECTED[rel(path)]
    before = everything(stub)
    err = failure(apply, stub, expect.kind, path.read_bytes())
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == expect.reason and err.domain == "porter-bundle"
    assert list(err.violations) == [expect.field]
    for text in expect.says:
        assert text in err.violations[expect.field]
    assert everything(stub) == before


def test_invalid_schema_fixtures_name_both_versions(stub):
    folder = REFUSED[0].parents[1]
    for sub, kind, supported in (
        ("installations", DocumentKind.INSTALLATION, "1.0.2"),
        ("creds", DocumentKind.CREDENTIAL_SET, "1.0.1"),
        ("params", DocumentKind.PARAMETER_SET, "1.0.1 or 1.1.0"),
    ):
        err = failure(apply, stub, kind, (folder / sub / "invalid-schema.yaml").read_bytes())
        assert err.violations["schemaVersion"].startswith(
            f"the schema version is 0.38.5 but the supported {kind.value} schema version is {supported}"
        )


def _apply_fixtures(stub) -> list[tuple[Path, DocumentKind, Any]]:
    """Every accepted fixture applied, sets first (the installations name them)."""
    order = sorted(ACCEPTED, key=lambda p: EXPECTED[rel(p)].kind is DocumentKind.INSTALLATION)
    applied = []
    for path in order:
        kind = EXPECTED[rel(path)].kind
        resp = apply(stub, kind, path.read_bytes())
        assert resp.outcome == CREATED, rel(path)
        assert tuple(resp.warnings) == EXPECTED[rel(path)].warns
        applied.append((path, kind, resource_of(kind, resp)))
    return applied


def test_accepted_fixtures_apply_and_install(stub, porter_world, fake):
    applied = _apply_fixtures(stub)
    installs = [a for a in applied if a[1] is DocumentKind.INSTALLATION]
    assert len(installs) == 4
    for _, _, inst in installs:
        wait_idle(stub, inst.namespace, inst.name)
        got = stub.GetInstallation(
            pb.GetInstallationRequest(namespace=inst.namespace, name=inst.name)
        ).installation
        assert got.status.run_state == RUN_STATE_SUCCEEDED, got.status
    env = {
        (s.env["PORTER_INSTALLATION_NAMESPACE"], s.env["CNAB_INSTALLATION_NAME"]): s.env
        for s in fake.specs
    }
    assert env["", "mybuns"]["PASSWORD"] == "supersecret"
    assert env["", "mybuns"]["LOG_LEVEL"] == "11"  # from the mybuns parameter set
    assert env["", "mybuns"]["USERNAME"] == "porter-user"  # env USER via the credential set
    assert env["", "myenv"]["LOGLEVEL"] == "debug"
    assert env["dev", "mybuns"]["NAME"] == "Porter Operator"
    assert env["operator", "hello"]["NAME"] == "llamas"


@pytest.mark.parametrize("reveal", [True, False], ids=["revealed", "withheld"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_then_apply_changes_nothing_for_every_fixture(stub, porter_world, fmt, reveal):
    applied = _apply_fixtures(stub)
    for _, kind, resource in applied:
        if kind is DocumentKind.INSTALLATION:
            wait_idle(stub, resource.namespace, resource.name)
    for path, kind, resource in applied:
        # Sensitive parameters are in an installation's export only when revealed, else
        # {redacted: true}: applying either keeps what the server has.
        text = export(stub, kind, resource.namespace, resource.name, fmt, reveal=reveal)
        doc = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        assert doc["schemaType"] == kind.value and doc["name"] == resource.name
        before = everything(stub)
        again = apply(stub, kind, text.encode())
        assert again.outcome == UNCHANGED, (rel(path), list(again.changed_fields))
        assert list(again.changed_fields) == []
        if kind is DocumentKind.INSTALLATION:
            assert again.decision == pb.APPLY_DECISION_NONE, again.reason
            assert not again.HasField("run") and list(again.changes) == []
        assert everything(stub) == before, rel(path)  # not even an etag moved


def test_exported_installation_document(stub, porter_world):
    path = next(p for p in ACCEPTED if p.name == "mybuns.yaml" and p.parent.name == "installations")
    for p in ACCEPTED:
        if p.name == "mybuns.yaml" and p.parent.name in ("creds", "params"):
            apply(stub, EXPECTED[rel(p)].kind, p.read_bytes())
    apply(stub, DocumentKind.INSTALLATION, path.read_bytes())
    wait_idle(stub, "", "mybuns")
    expected = {
        "schemaType": "Installation",
        "schemaVersion": "1.0.2",
        "name": "mybuns",
        "namespace": "",
        "labels": {"generator": "porter-operator", "generatorVersion": "v0.2.0", "thing": "1"},
        "bundle": {"repository": "localhost:5000/mybuns", "version": "v0.1.2"},
        "credentialSets": ["mybuns"],
        "parameterSets": ["mybuns"],
    }
    # The bundle marks password sensitive (writeOnly): withheld unless revealed.
    plain = stub.ExportInstallation(pb.ExportInstallationRequest(name="mybuns"))
    withheld = {"password": {"redacted": True}}
    assert yaml.safe_load(plain.document) == {**expected, "parameters": withheld}
    assert "supersecret" not in plain.document
    assert list(plain.sensitive_parameters) == ["password"]
    revealed = export(stub, DocumentKind.INSTALLATION, "", "mybuns", reveal=True)
    assert yaml.safe_load(revealed) == {**expected, "parameters": {"password": "supersecret"}}
    # The export without the value round-trips: {redacted: true} keeps the stored value.
    before = everything(stub)
    again = apply(stub, DocumentKind.INSTALLATION, plain.document.encode())
    assert again.outcome == UNCHANGED and again.decision == pb.APPLY_DECISION_NONE
    assert not again.HasField("run") and list(again.changes) == []
    assert everything(stub) == before
    assert export(stub, DocumentKind.INSTALLATION, "", "mybuns", reveal=True) == revealed
    err = failure(stub.ExportInstallation, pb.ExportInstallationRequest(name="nope"))
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "INSTALLATION_NOT_FOUND"


# --- sets -----------------------------------------------------------------------------------

CREDS = b"""\
schemaType: CredentialSet
schemaVersion: 1.0.1
namespace: dev
name: app
labels: {team: web}
credentials:
  - name: token
    source: {value: s3cret-token}
  - name: user
    source: {env: USER}
"""


def test_credential_literals_stay_write_only_and_survive_a_round_trip(stub, server):
    created = stub.ApplyCredentialSet(pb.ApplyCredentialSetRequest(document=CREDS))
    assert created.outcome == CREATED
    assert created.credential_set.credentials[0].source == ValueSource(redacted=True)
    text = export(stub, DocumentKind.CREDENTIAL_SET, "dev", "app")
    assert b"s3cret" not in created.SerializeToString() and "s3cret" not in text
    assert yaml.safe_load(text)["credentials"][0] == {"name": "token", "source": {"redacted": True}}

    again = stub.ApplyCredentialSet(pb.ApplyCredentialSetRequest(document=text.encode()))
    assert again.outcome == UNCHANGED
    assert again.credential_set.etag == created.credential_set.etag
    # An edit of the exported file keeps the withheld value too.
    edited = text.replace("team: web", "team: api")
    updated = stub.ApplyCredentialSet(pb.ApplyCredentialSetRequest(document=edited.encode()))
    assert updated.outcome == UPDATED and list(updated.changed_fields) == ["labels"]
    full = server.services.credential_sets.get_full("dev", "app")
    assert full.credentials[0].source.value.string_value == "s3cret-token"

    # A new literal replaces it; "redacted" for a credential with no stored literal is refused.
    stub.ApplyCredentialSet(
        pb.ApplyCredentialSetRequest(document=CREDS.replace(b"s3cret-token", b"new-token"))
    )
    full = server.services.credential_sets.get_full("dev", "app")
    assert full.credentials[0].source.value.string_value == "new-token"
    before = everything(stub)
    bad = text.replace("name: app", "name: other")
    err = failure(stub.ApplyCredentialSet, pb.ApplyCredentialSetRequest(document=bad.encode()))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.violations == {
        "credentials[0].source": "exactly one of value, env, path, command or secret is required"
    }
    assert everything(stub) == before


def test_set_outcomes_and_dry_run(stub):
    doc = b"schemaType: ParameterSet\nschemaVersion: 1.1.0\nname: p\nparameters:\n  - {name: n, source: {value: 3}}\n"
    dry = stub.ApplyParameterSet(pb.ApplyParameterSetRequest(document=doc, dry_run=True))
    assert dry.outcome == CREATED and dry.parameter_set.name == "p"
    assert stub.ListParameterSets(pb.ListParameterSetsRequest()).parameter_sets == []
    made = stub.ApplyParameterSet(pb.ApplyParameterSetRequest(document=doc))
    assert (
        made.outcome == CREATED and made.parameter_set.parameters[0].source.value.number_value == 3
    )
    assert stub.ApplyParameterSet(pb.ApplyParameterSetRequest(document=doc)).outcome == UNCHANGED
    changed = doc.replace(b"value: 3", b"value: 4").replace(b"1.1.0", b"1.1.0\nlabels: {a: b}")
    dry = stub.ApplyParameterSet(pb.ApplyParameterSetRequest(document=changed, dry_run=True))
    assert dry.outcome == UPDATED and list(dry.changed_fields) == ["labels", "parameters"]
    got = stub.GetParameterSet(pb.GetParameterSetRequest(name="p")).parameter_set
    assert got == made.parameter_set  # the dry run wrote nothing
    done = stub.ApplyParameterSet(pb.ApplyParameterSetRequest(document=changed))
    assert done.outcome == UPDATED and done.parameter_set.etag != made.parameter_set.etag


# --- bad documents --------------------------------------------------------------------------

INSTALLATION = (
    b"schemaVersion: 1.0.2\nname: app\nbundle: {repository: example.com/app, version: 1.0.0}\n"
)


@pytest.mark.parametrize(
    ("call", "document", "reason", "violations"),
    [
        ("inst", b"name: [", "INVALID_DOCUMENT", {"document": "not valid YAML or JSON: "}),
        ("inst", b"\x00\xff", "INVALID_DOCUMENT", {"document": "not UTF-8 text"}),
        ("inst", b"", "INVALID_DOCUMENT", {"document": "the document is empty"}),
        (
            "inst",
            INSTALLATION + b"---\n" + INSTALLATION,
            "INVALID_DOCUMENT",
            {"document": "the stream holds 2 documents"},
        ),
        (
            "inst",
            b"name: " + b"x" * (1 << 20),
            "INVALID_DOCUMENT",
            {"document": "larger than 1048576 bytes"},
        ),
        (
            "creds",
            INSTALLATION,
            "WRONG_DOCUMENT_TYPE",
            {"document": "this is an Installation document"},
        ),
        (
            "params",
            CREDS,
            "WRONG_DOCUMENT_TYPE",
            {"schemaType": "invalid schemaType CredentialSet, expected ParameterSet"},
        ),
        ("inst", INSTALLATION + b"extra: 1\n", "INVALID_DOCUMENT", {"extra": "unknown field"}),
        (
            "inst",
            INSTALLATION.replace(b"name: app\n", b""),
            "INVALID_DOCUMENT",
            {"name": "is required"},
        ),
        (
            "inst",
            INSTALLATION.replace(b"name: app", b"name: -bad-"),
            "INVALID_DOCUMENT",
            {"name": "name may contain only"},
        ),
        (
            "inst",
            INSTALLATION + b"labels: {'Bad Key': x}\n",
            "INVALID_DOCUMENT",
            {"labels.Bad Key": "label key name"},
        ),
        (
            "inst",
            INSTALLATION + b"credentialSets: [a, a]\n",
            "INVALID_DOCUMENT",
            {"credentialSets[1]": "listed twice"},
        ),
        (
            "inst",
            INSTALLATION.replace(b"1.0.0", b"not-a-version"),
            "INVALID_DOCUMENT",
            {"bundle.version": "semantic version"},
        ),
        (
            "creds",
            b"schemaVersion: 1.0.1\nname: c\ncredentials:\n  - {name: a, source: {}}\n",
            "INVALID_DOCUMENT",
            {"credentials[0].source": "it has none"},
        ),
        (
            "creds",
            b"schemaVersion: 1.0.1\nname: c\ncredentials:\n  - {name: a, source: {env: A, path: /p}}\n",
            "INVALID_DOCUMENT",
            {"credentials[0].source": "it has env, path"},
        ),
        (
            "creds",
            b"schemaVersion: 1.0.1\nname: c\ncredentials:\n  - {name: a, source: {env: 'A B'}}\n",
            "INVALID_DOCUMENT",
            {"credentials[0].source.env": "environment variable name"},
        ),
        (
            "params",
            b"schemaVersion: 1.0.1\nname: p\nparameters:\n  - {name: a, source: {value: {b: 1}}}\n",
            "INVALID_DOCUMENT",
            {"parameters[0].source.value": "string values only"},
        ),
    ],
)
def test_bad_documents_are_invalid_argument_with_paths(stub, call, document, reason, violations):
    before = everything(stub)
    kind = {"inst": DocumentKind.INSTALLATION, "creds": DocumentKind.CREDENTIAL_SET}.get(
        call, DocumentKind.PARAMETER_SET
    )
    err = failure(apply, stub, kind, document)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.reason == reason, err
    assert list(err.violations) == list(violations), err.violations
    for field, text in violations.items():
        assert text in err.violations[field]
    assert everything(stub) == before


def test_operator_resource_paths_start_at_spec(stub):
    doc = b"apiVersion: getporter.org/v1\nkind: Installation\nmetadata: {name: x}\nspec:\n  schemaVersion: 1.0.2\n  name: -x\n  bundle: {repository: example.com/app}\n"
    err = failure(apply, stub, DocumentKind.INSTALLATION, doc)
    assert err.violations == {"spec.bundle": "one of digest, version or tag is required"}
    err = failure(
        apply,
        stub,
        DocumentKind.INSTALLATION,
        doc.replace(b"{repository: example.com/app}", b"{repository: example.com/app, tag: v1}"),
    )
    assert list(err.violations) == ["spec.name"]


def test_unknown_bundle_stores_nothing(stub):
    err = failure(apply, stub, DocumentKind.INSTALLATION, INSTALLATION)
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "BUNDLE_NOT_FOUND"
    assert stub.ListInstallations(pb.ListInstallationsRequest()).installations == []


# --- the schema-check setting ---------------------------------------------------------------


@pytest.fixture
def lenient(store, fake) -> Services:
    return Services.create(store, executor=lambda: fake, schema_check=SchemaCheck.NONE)


def test_schema_check_none_takes_old_versions_with_a_warning(lenient, store):
    docs = lenient.documents
    raw = REFUSED[0].parents[1].joinpath("params", "invalid-schema.yaml").read_bytes()
    done = docs.apply_parameter_set(raw)
    assert done.outcome == "created" and done.resource.schema_version == "0.38.5"
    assert done.warnings and "0.38.5" in done.warnings[0] and "1.0.1 or 1.1.0" in done.warnings[0]
    assert Services.create(store).schema_check is SchemaCheck.EXACT
