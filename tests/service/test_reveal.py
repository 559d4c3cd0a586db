"""Reveals in the service layer: authorized before anything is read, merged in, audited once;
and a run addressed by its ID alone is hidden from a caller who may not view its namespace.
Over a real SQLite store, without a server: the caller's Access is passed in."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import Output
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter_bundle.auth.audit import AuditLog
from porter_bundle.auth.authz import Access
from porter_bundle.auth.roles import LOCAL, Principal
from porter_bundle.errors import NotFound, PermissionDenied
from porter_bundle.service import Services
from porter_bundle.service.reveal import Caller, RevealService
from porter_bundle.service.runs import OutputValue
from porter_bundle.service.visibility import check_run_by_id
from tests.auth.conftest import finished_run

NS, OTHER = "team-a", "team-b"
SECRET_PARAM, SECRET_OUTPUT, SECRET_CRED = "p-Hx81", "o-Qz27", "c-Lm55"
METHOD = "/porter.bundle.v1.PorterBundle/Test"

VIEWER = Caller(
    Access(Principal("viewer", {"viewer": frozenset({NS})}), METHOD, authenticated=True), METHOD
)
READER = Caller(
    Access(
        Principal("reader", {"viewer": frozenset({NS}), "secret-reader": frozenset({NS})}),
        METHOD,
        authenticated=True,
    ),
    METHOD,
)
LOCAL_CALLER = Caller(Access(LOCAL), METHOD)


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def reveals(services: Services, audit_path: Path) -> RevealService:
    return RevealService(services, AuditLog(audit_path))


@pytest.fixture
def run(services: Services) -> Any:
    services.installations.create(
        Installation(
            namespace=NS,
            name="web",
            bundle=BundleReference(repository="localhost:5000/web", version="0.1.0"),
        )
    )
    return finished_run(
        services,
        NS,
        "web",
        parameters={"password": SECRET_PARAM, "replicas": 2},
        sensitive=frozenset({"password"}),
        outputs=(
            OutputValue("conn", "postgres://db", "string"),
            OutputValue("password", SECRET_OUTPUT, "string", sensitive=True),
        ),
    )


def _audit(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_parameters_merged_only_for_a_secret_reader(reveals, run, audit_path):
    plain = reveals.run(NS, "web", run.id, reveal=False, caller=VIEWER)
    assert "password" not in plain.parameters and plain.parameters["replicas"] == 2
    with pytest.raises(PermissionDenied):
        reveals.run(NS, "web", run.id, reveal=True, caller=VIEWER)
    assert _audit(audit_path) == []

    shown = reveals.run(NS, "web", "latest", reveal=True, caller=READER)
    assert shown.parameters["password"] == SECRET_PARAM
    (record,) = _audit(audit_path)
    assert record["principal"] == "reader" and record["method"] == METHOD
    assert record["resource"] == f"installations/{NS}/web/runs/{run.id}"
    assert SECRET_PARAM not in audit_path.read_text()


def test_sensitive_outputs_merged_and_audited(reveals, run, audit_path):
    def values(found: Any) -> dict[str, Any]:
        outs = [Output.FromString(d) for d in found.docs]
        return {o.name: json_format.MessageToDict(o).get("value") for o in outs}

    plain = reveals.run_outputs(NS, "web", run.id, any_result=False, reveal=False, caller=VIEWER)
    assert values(plain) == {"conn": "postgres://db", "password": None}
    shown = reveals.run_outputs(NS, "web", "", any_result=False, reveal=True, caller=READER)
    assert values(shown) == {"conn": "postgres://db", "password": SECRET_OUTPUT}
    assert (shown.run_id, shown.run_state) == (plain.run_id, plain.run_state)
    (record,) = _audit(audit_path)
    assert record["resource"] == f"installations/{NS}/web/runs/{run.id}/outputs"


def test_nothing_sensitive_means_no_audit_record(reveals, services, audit_path):
    services.installations.create(
        Installation(
            namespace=NS,
            name="plain",
            bundle=BundleReference(repository="localhost:5000/web", version="0.1.0"),
        )
    )
    run = finished_run(services, NS, "plain", outputs=(OutputValue("conn", "x", "string"),))
    reveals.run(NS, "plain", run.id, reveal=True, caller=READER)
    reveals.run_outputs(NS, "plain", run.id, any_result=False, reveal=True, caller=READER)
    assert _audit(audit_path) == []


def test_permission_is_checked_before_anything_is_read(reveals, audit_path):
    # The installation does not exist: a caller without the role learns nothing (denied, not
    # NOT_FOUND); one with it is told it is missing, and nothing is audited.
    with pytest.raises(PermissionDenied):
        reveals.installation(NS, "missing", reveal=True, caller=VIEWER)
    with pytest.raises(NotFound):
        reveals.installation(NS, "missing", reveal=True, caller=READER)
    assert _audit(audit_path) == []


def test_credential_set_literals_revealed_and_audited(reveals, services, audit_path):
    services.credential_sets.create(
        CredentialSet(
            namespace=NS,
            name="creds",
            credentials=[
                NamedValueSource(
                    name="token",
                    source=ValueSource(value=struct_pb2.Value(string_value=SECRET_CRED)),
                )
            ],
        )
    )
    sets = services.credential_sets
    plain = reveals.value_set(sets, NS, "creds", reveal=False, caller=VIEWER)
    assert plain.credentials[0].source.redacted
    shown = reveals.value_set(sets, NS, "creds", reveal=True, caller=READER)
    assert shown.credentials[0].source.value.string_value == SECRET_CRED
    text = reveals.export_credential_set(NS, "creds", "yaml", reveal=True, caller=READER)
    assert SECRET_CRED in text
    assert [r["resource"] for r in _audit(audit_path)] == [f"credentialsets/{NS}/creds"] * 2


def test_parameter_sets_audit_under_their_own_name(reveals, services, audit_path):
    services.parameter_sets.create(
        ParameterSet(
            namespace=NS,
            name="params",
            parameters=[NamedValueSource(name="color", source=ValueSource(env="COLOR"))],
        )
    )
    reveals.value_set(services.parameter_sets, NS, "params", reveal=True, caller=READER)
    assert [r["resource"] for r in _audit(audit_path)] == [f"parametersets/{NS}/params"]


def test_legacy_outputs_follow_the_server_setting_or_the_role(services, run, audit_path):
    def shown(reveals: RevealService, caller: Caller) -> dict[str, str]:
        found = reveals.legacy_latest_outputs(NS, "web", caller=caller)
        return {v.name: v.value.string_value for v in found}

    strict = RevealService(services, AuditLog(audit_path))
    assert shown(strict, LOCAL_CALLER)["password"] == ""  # not authenticated: not revealed
    assert shown(strict, VIEWER)["password"] == ""
    assert shown(strict, READER)["password"] == SECRET_OUTPUT
    trusting = RevealService(services, AuditLog(audit_path), legacy_reveal_sensitive=True)
    assert shown(trusting, LOCAL_CALLER)["password"] == SECRET_OUTPUT
    assert [r["principal"] for r in _audit(audit_path)] == ["reader", LOCAL.name]


def test_a_run_by_id_alone_is_hidden_outside_the_callers_namespaces(services, run):
    async def read(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def check(access: Access, namespace: str = "", name: str = "") -> None:
        asyncio.run(check_run_by_id(services.runs, namespace, name, run.id, access, read=read))

    check(READER.access)  # its namespace: visible
    check(Access(LOCAL))  # not authenticated: everything is visible
    outsider = Access(Principal("b", {"viewer": frozenset({OTHER})}), METHOD, authenticated=True)
    with pytest.raises(NotFound) as err:
        check(outsider)
    assert err.value.reason == "RUN_NOT_FOUND" and err.value.metadata == {"run_id": run.id}
    check(outsider, NS, "web")  # addressed by name: the interceptor checked it, not this
