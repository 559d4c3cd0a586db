"""Output retention through real stubs: values of runs older than the last N expire (reported
as such, never as empty), names, types and digests stay, an output's latest value stays."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from installation.v1alpha1 import installation_pb2 as ipb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, ACTION_UPGRADE, RUN_STATE_SUCCEEDED
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle.service import Services
from porter_bundle.service.runs import NewRun, OutputValue

NS, NAME = "dev", "kept"
SECRET = "secret-Hh42-expired-value"


@pytest.fixture
def services(store) -> Services:
    return Services.create(store, output_retention_runs=2)


@pytest.fixture
def installation(stub):
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository="localhost:5000/k", tag="v1")
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))


def record(services: Services, *outputs: OutputValue, action=ACTION_UPGRADE) -> str:
    run, _ = services.runs.create(NS, NAME, NewRun(action=action))
    services.runs.start(run.id)
    services.runs.finish(run.id, RUN_STATE_SUCCEEDED, "", outputs)
    return run.id


def outputs(stub, run_id: str, reveal: bool = False) -> dict:
    resp = stub.ListInstallationRunOutputs(
        pb.ListInstallationRunOutputsRequest(
            namespace=NS, name=NAME, run_id=run_id, reveal_sensitive=reveal
        )
    )
    return {o.name: o for o in resp.outputs}


def test_old_values_expire_and_say_so(server, stub, channel, installation, store):
    services = server.services
    first = record(
        services,
        OutputValue("conn", "db://one", "string"),
        OutputValue("token", SECRET, "string", sensitive=True),
        OutputValue("only-first", 7, "integer"),
        action=ACTION_INSTALL,
    )
    before = outputs(stub, first)
    second = record(services, OutputValue("conn", "db://two"), OutputValue("token", "t2", "", True))
    assert not any(o.expired for o in outputs(stub, first).values())  # 2 runs: all kept
    third = record(services, OutputValue("conn", "db://three"))

    old = outputs(stub, first, reveal=True)
    assert set(old) == {"conn", "token", "only-first"}
    for name in ("conn", "token"):
        assert old[name].expired and not old[name].HasField("value")
        assert (old[name].type, old[name].digest, old[name].sensitive) == (
            before[name].type,
            before[name].digest,
            before[name].sensitive,
        )
    # Still the latest value of its name (what latest outputs and parameter sources read).
    assert not old["only-first"].expired and old["only-first"].value.number_value == 7
    assert all(not o.expired for o in outputs(stub, second, reveal=True).values())
    assert outputs(stub, second, reveal=True)["token"].value.string_value == "t2"
    assert not outputs(stub, third)["conn"].expired

    latest = services.runs.latest_output_values(services.runs.installation_id(NS, NAME))
    assert {k: v.value for k, v in latest.items()} == {
        "conn": "db://three",
        "token": "t2",
        "only-first": 7,
    }
    legacy = porter_pb2_grpc.PorterStub(channel).ListInstallationLatestOutputs(
        ipb.ListInstallationLatestOutputRequest(namespace=NS, name=NAME)
    )
    assert {o.name for o in legacy.outputs} == {"conn", "token", "only-first"}
    # Nothing of the expired secret is left in the database, in clear or encrypted.
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT name, value FROM outputs WHERE run_id = :r AND expired"), {"r": first}
        ).all()
    assert {r[0] for r in rows} == {"conn", "token"}
    assert dict(rows)["conn"] == "" and SECRET not in str(rows)
    assert services.runs.revealed_outputs(first) == {"only-first": 7}


def test_readers_never_see_an_empty_value_while_runs_expire_others(server, stub, installation):
    services = server.services
    ids = [record(services, OutputValue("conn", "db://0"), action=ACTION_INSTALL)]
    problems: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for run_id in list(ids):
                for out in outputs(stub, run_id).values():
                    if not out.expired and not out.HasField("value"):
                        problems.append(f"{run_id}/{out.name}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 15):
            ids.append(record(services, OutputValue("conn", f"db://{i}")))
    finally:
        done.set()
        reader.join(timeout=30)
    assert problems == []
    expired = [run_id for run_id in ids if outputs(stub, run_id)["conn"].expired]
    assert expired == ids[:-2]
