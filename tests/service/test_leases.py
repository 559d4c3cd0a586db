"""Run leases on the real store (SQLite, or PostgreSQL under `make test-postgres`): claims take
only expired or unowned runs, a replica that lost a run can write nothing more about it, a
drain hands back pending runs. Several real server processes: test_replicas.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_FAILED, RUN_STATE_PENDING, RUN_STATE_RUNNING
from porter_bundle.errors import Aborted
from porter_bundle.service import ActionRequest, ActionSettings, LeaseSettings, Services
from porter_bundle.service.runs import Lease, LeaseLost, NewRun
from tests.fake_executor import FakeExecutor
from tests.helpers import wait_until_async

NS, REF = "dev", "localhost:5000/plain:v1"
PLAIN = {
    "schemaVersion": "v1.0.0",
    "name": "plain",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/plain:v1"}],
}
A, B = Lease("a", 30.0), Lease("b", 30.0)
EXPIRED_A = Lease("a", -1.0)


def services_of(store, fake: FakeExecutor | None = None, replica: str = "a", slots: int = 2):
    return Services.create(
        store,
        executor=lambda: fake or FakeExecutor(),
        action_settings=ActionSettings(
            run_timeout_seconds=30,
            max_concurrent_runs=slots,
            cancel_grace_seconds=1,
            network=None,
            engine_retry_seconds=60,
        ),
        leases=LeaseSettings(replica, run_lease_seconds=30, lease_renew_seconds=10),
    )


def installations(services: Services, *names: str) -> None:
    services.bundles.create(REF, json.dumps(PLAIN))
    for name in names:
        services.installations.create(
            Installation(
                namespace=NS, name=name, bundle=BundleReference(repository=REF[:-3], tag="v1")
            )
        )


def owner_of(services: Services, run_id: str) -> str | None:
    found = services.runs.renew(Lease("nobody", 1), [run_id])
    return found[run_id][0]


def test_a_claim_takes_expired_and_unowned_runs_only(store):
    services = services_of(store)
    installations(services, "held", "expired", "unowned")
    runs = services.runs
    held, _ = runs.create(NS, "held", NewRun(action=1), A)
    expired, _ = runs.create(NS, "expired", NewRun(action=1), EXPIRED_A)
    unowned, _ = runs.create(NS, "unowned", NewRun(action=1))
    for r in (held, expired, unowned):
        runs.start(r.id)

    taken = runs.claim(B, max_pending=10)
    assert sorted(t.run.id for t in taken) == sorted([expired.id, unowned.id])
    assert {t.run.id: t.previous_owner for t in taken} == {expired.id: "a", unowned.id: None}
    assert runs.claim(Lease("c", 30), max_pending=10) == []  # b's leases are fresh
    assert owner_of(services, held.id) == "a"
    # A replica restarted under the same id takes its own runs back at once.
    assert [t.run.id for t in runs.claim(A, max_pending=10, own=True)] == [held.id]


def test_pending_runs_are_claimed_up_to_the_free_slots(store):
    services = services_of(store)
    installations(services, "p1", "p2", "p3")
    for name in ("p1", "p2", "p3"):
        services.runs.create(NS, name, NewRun(action=1))
    assert len(services.runs.claim(B, max_pending=1)) == 1
    assert len(services.runs.claim(Lease("c", 30), max_pending=5)) == 2


def test_a_replica_that_lost_its_lease_writes_nothing_more(store):
    services = services_of(store)
    installations(services, "app")
    runs = services.runs
    run, _ = runs.create(NS, "app", NewRun(action=1), EXPIRED_A)
    runs.start(run.id, EXPIRED_A)
    runs.append_log(run.id, b"from a\n", EXPIRED_A)
    [taken] = runs.claim(B, max_pending=0)
    assert taken.run.id == run.id and taken.previous_owner == "a"
    for write in (
        lambda: runs.append_log(run.id, b"late\n", A),
        lambda: runs.finish(run.id, RUN_STATE_FAILED, "from a", lease=A),
        lambda: runs.mask_log(run.id, lambda b: b.upper(), A),
    ):
        with pytest.raises(LeaseLost) as err:
            write()
        assert err.value.reason == "RUN_LEASE_LOST"
    assert runs.log_length(run.id) == len(b"from a\n")
    runs.append_log(run.id, b"from b\n", B)
    ended = runs.finish(run.id, RUN_STATE_FAILED, "ended by b", lease=B)
    assert ended.message == "ended by b"
    found = runs.renew(A, [run.id])
    assert found[run.id][0] == "b" and found[run.id][1].state == RUN_STATE_FAILED


def test_one_active_run_per_installation_is_a_database_constraint(store):
    """The unique index refuses a second active run even past the service's own check."""
    services = services_of(store)
    installations(services, "app")
    services.runs.create(NS, "app", NewRun(action=1))
    from porter_bundle import store as st

    with pytest.raises(Aborted) as err:  # the recorder's check
        services.runs.create(NS, "app", NewRun(action=1))
    assert err.value.reason == "RUN_IN_PROGRESS"
    index = "ix_runs_active_installation|: runs.installation_id$"  # PostgreSQL's, SQLite's
    with pytest.raises(st.DuplicateKey, match=index), store.write() as s:  # the index
        row = s.get(st.RunRow, services.runs.active()[0].id)
        st.add_run(
            s,
            st.RunRow(
                id="01ARZ3NDEKTSV4RRFFQ69G5FZZ",
                installation_id=row.installation_id,
                state=RUN_STATE_PENDING,
                action=1,
                doc=b"",
                parameters=b"{}",
                created_at=row.created_at,
            ),
        )


def test_the_heartbeat_stops_a_run_another_replica_took_over(store):
    fake = FakeExecutor()
    fake.hold.set()
    services = services_of(store, fake)
    installations(services, "app")

    async def go() -> str:
        run = await services.actions.execute(ActionRequest(NS, "app", "install"))
        await wait_until_async(lambda: fake.started.is_set(), "the container to start")
        # Replica b takes the run (as if a's lease had expired while it was paused); a row
        # that a's write holds locked at that moment is skipped (SKIP LOCKED): try again.
        await wait_until_async(
            lambda: services.runs.claim(B, max_pending=0, every_active=True), "b to take the run"
        )
        await services.actions._runner.leases.tick()
        await services.actions.wait_idle()
        return run.id

    run_id = asyncio.run(go())
    assert run_id in fake.canceled  # a stopped its container
    left = services.runs.current(run_id)
    assert left is not None and left.state == RUN_STATE_RUNNING  # and left the run to b
    assert owner_of(services, run_id) == "b"


def test_a_drain_hands_back_pending_runs_for_another_replica(store):
    fake = FakeExecutor()
    fake.hold.set()
    services = services_of(store, fake, slots=1)
    installations(services, "first", "second")

    async def go() -> None:
        first = await services.actions.execute(ActionRequest(NS, "first", "install"))
        second = await services.actions.execute(ActionRequest(NS, "second", "install"))
        await wait_until_async(lambda: fake.started.is_set(), "the first container to start")
        await services.actions.drain(0)
        assert services.runs.current(second.id).state == RUN_STATE_PENDING
        assert owner_of(services, second.id) is None
        assert owner_of(services, first.id) == "a"
        taken = services.runs.claim(B, max_pending=5)
        assert [t.run.id for t in taken] == [second.id]
        fake.hold.clear()
        await services.actions.close()

    asyncio.run(go())
