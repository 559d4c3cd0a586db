"""Runs recorded before claims were stored (revision 0006) get their claims on upgrade, and
their documents are rebuilt when read, valid against the CNAB schemas."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import text

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, ACTION_INVOKE, RUN_STATE_SUCCEEDED
from porter_bundle.service import Services
from porter_bundle.service.claims import ClaimQuery
from porter_bundle.service.runs import NewRun, OutputValue
from porter_bundle.store import Database, Keyring
from porter_bundle.store.migrate import alembic_config, upgrade
from tests.helpers import cnab_validator

NS, NAME, REF = "team", "old", "r.example.com/old:v1"
BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "old",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "r.example.com/old-installer:v1"}],
    "actions": {"status": {"modifies": False}},
}


@pytest.fixture
def fresh(database_url: str) -> Iterator[Database]:
    s = Database(database_url, keyring=Keyring.generate())
    yield s
    s.close()


def test_runs_from_before_claims_are_served_as_claims(fresh: Database):
    upgrade(fresh.engine)
    services = Services.create(fresh)
    digest = services.bundles.create(REF, json.dumps(BUNDLE)).digest
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository=REF[:-3], tag="v1")
    )
    services.installations.create(inst)
    ids = []
    for action, custom in ((ACTION_INSTALL, ""), (ACTION_INVOKE, "status")):
        run, _ = services.runs.create(
            NS,
            NAME,
            NewRun(action=action, custom_action=custom, bundle_reference=REF, bundle_digest=digest),
        )
        services.runs.start(run.id)
        services.runs.finish(run.id, RUN_STATE_SUCCEEDED, "ok", [OutputValue("o", 1, "integer")])
        ids.append(run.id)
    # Back to a server before claims, then up again: the claims are backfilled.
    command.downgrade(alembic_config(fresh.engine), "0007")
    fresh.migrate()
    with fresh.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT run_id, action, revision, doc FROM claims ORDER BY run_id")
        )
        assert [tuple(r) for r in rows] == [
            (ids[0], "install", ids[0], None),
            (ids[1], "status", ids[1], None),
        ]
        assert conn.execute(text("SELECT count(*) FROM claim_results")).scalar() == 0

    claims = Services.create(fresh).claims
    listed = claims.list(ClaimQuery(namespace=NS), page_size=0, page_token="", skip=0)
    assert [c.id for c in listed.claims] == ids[::-1]
    validator = cnab_validator("claim.schema.json")
    for claim in listed.claims:
        doc = json.loads(claim.claim_json)
        validator.validate(doc)
        assert doc["bundle"] == BUNDLE and doc["id"] == claim.id
    [result] = claims.results(NS, NAME, ids[0])
    doc = json.loads(result.result_json)
    cnab_validator("claim-result.schema.json").validate(doc)
    assert doc["status"] == "succeeded" and doc["message"] == "ok" and set(doc["outputs"]) == {"o"}
