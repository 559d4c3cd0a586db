"""The runner without a server: no engine, recovery after a restart, and the settings runs take.

Runs through the real server are in test_actions.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading

import pytest

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource
from porter_bundle.config import Settings
from porter_bundle.errors import Unavailable
from porter_bundle.executor import ContainerResult, ExecutorUnavailable
from porter_bundle.service import ActionRequest, ActionSettings, Services
from porter_bundle.service.runs import NewRun
from tests.fake_executor import FakeExecutor
from tests.helpers import wait_until_async
from tests.service.action_bundle import BUNDLE, GOOD_OUTPUTS, NAME, NS, REF, src


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


def add_installation(services: Services, name: str = NAME) -> None:
    """An installation of the test bundle, by tag."""
    services.installations.create(
        Installation(
            namespace=NS,
            name=name,
            bundle=BundleReference(repository="localhost:5000/app", tag="v1.0.0"),
        )
    )


def test_no_engine_is_unavailable(store, tmp_path):
    services = Services.create(store)
    add_installation(services)
    services.bundles.create(REF, json.dumps({**BUNDLE, "parameters": {}, "credentials": {}}))

    async def go() -> None:
        await services.actions.execute(ActionRequest(NS, NAME, "install"))

    with pytest.raises(Unavailable) as err:
        asyncio.run(go())
    assert err.value.reason == "CONTAINER_ENGINE_UNAVAILABLE"
    # Nothing was recorded: no run waits for an engine that is not there.
    assert services.runs.active() == []
    assert services.installations.get(NS, NAME).status.run_id == ""


def test_recovery_finishes_runs_left_active(store, fake, tmp_path):
    services = Services.create(store, executor=lambda: fake)
    services.bundles.create(REF, json.dumps(BUNDLE))
    services.credential_sets.create(
        CredentialSet(
            namespace=NS,
            name="creds",
            credentials=[NamedValueSource(name="token", source=src(value="tok-resolved-again"))],
        )
    )
    for name in ("a", "b", "c", "d"):
        add_installation(services, name)
    runs = services.runs
    digest = services.bundles.get(REF).digest
    alive, _ = runs.create(NS, "a", NewRun(action=1, bundle_digest=digest))
    runs.start(alive.id)
    runs.append_log(alive.id, b"whole ")  # stored live before the crash
    vanished, _ = runs.create(NS, "b", NewRun(action=1, bundle_digest=digest))
    runs.start(vanished.id)
    accepted = NewRun(
        action=1,
        bundle_digest=digest,
        bundle_reference=REF,
        parameters={"name": "web", "password": "pw-kept", "level": 7},
        sensitive_parameters=frozenset({"password"}),
        credential_sets=["creds"],
        request_id="req-accepted",
    )
    never, _ = runs.create(NS, "c", accepted)
    unstartable, _ = runs.create(NS, "d", NewRun(action=1, bundle_digest=digest))
    fake.recoverable[alive.id] = ContainerResult(
        exit_code=0, outputs=GOOD_OUTPUTS, logs=b"whole log\n"
    )
    fake.behaviour = lambda spec: ContainerResult(exit_code=0, outputs=GOOD_OUTPUTS)
    fake.orphan_ids = ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]

    async def go() -> None:
        await services.actions.recover()
        await services.actions.wait_idle()

    asyncio.run(go())
    assert runs.get(NS, "a", alive.id).state == RUN_STATE_SUCCEEDED
    # Only what the stored log lacked was appended: its offsets stay.
    assert runs.logs(NS, "a", alive.id)[1] == b"whole log\n"
    b = runs.get(NS, "b", vanished.id)
    assert b.state == RUN_STATE_FAILED and "vanished" in b.message
    # Accepted and never started: it starts now, with the values it was accepted with.
    c = runs.get(NS, "c", never.id)
    assert c.state == RUN_STATE_SUCCEEDED, c.message
    [spec] = [spec for spec in fake.specs if spec.run_id == never.id]
    assert spec.env["TOKEN"] == "tok-resolved-again" and spec.env["PASSWORD"] == "pw-kept"
    assert spec.env["LEVEL"] == "7" and spec.env["CNAB_REVISION"] == never.id
    assert runs.by_request(NS, "c", "req-accepted").id == never.id  # what a retry gets
    d = runs.get(NS, "d", unstartable.id)
    assert d.state == RUN_STATE_FAILED and "could not start it" in d.message
    assert "required parameter 'name'" in d.message
    assert "01ARZ3NDEKTSV4RRFFQ69G5FAV" in fake.recovered
    assert runs.active() == []


def test_recovery_masks_the_run_secrets_in_its_log_and_message(store, fake):
    services = Services.create(store, executor=lambda: fake)
    services.bundles.create(REF, json.dumps(BUNDLE))
    services.credential_sets.create(
        CredentialSet(
            namespace=NS,
            name="creds",
            credentials=[
                NamedValueSource(name="token", source=src(value="tok-after-restart")),
                NamedValueSource(name="kubeconfig", source=src(command="echo not-run")),
            ],
        )
    )
    add_installation(services)
    runs = services.runs
    new = NewRun(
        action=1,
        bundle_digest=services.bundles.get(REF).digest,
        parameters={"password": "pw-after-restart", "name": "web"},
        sensitive_parameters=frozenset({"password"}),
        credential_sets=["creds"],
    )
    alive, _ = runs.create(NS, NAME, new)
    runs.start(alive.id)
    fake.recoverable[alive.id] = ContainerResult(
        exit_code=None,
        logs=b"pw=pw-after-restart token=tok-after-restart name=web\n",
        error="failed with tok-after-restart",
    )

    async def go() -> None:
        await services.actions.recover()
        await services.actions.wait_idle()

    asyncio.run(go())
    done = runs.get(NS, NAME, alive.id)
    assert done.state == RUN_STATE_FAILED and done.message == "failed with ***"
    assert runs.logs(NS, NAME, alive.id)[1] == b"pw=%s token=%s name=web\n" % (
        b"*" * len("pw-after-restart"),
        b"*" * len("tok-after-restart"),
    )


def test_action_settings_declare_no_defaults_of_their_own():
    assert all(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in dataclasses.fields(ActionSettings)
    )
    given = Settings(
        run_timeout_seconds=12,
        max_concurrent_runs=3,
        cancel_grace_seconds=2,
        container_network="bridge",
        engine_retry_seconds=7,
    )
    assert ActionSettings.from_settings(given) == ActionSettings(
        run_timeout_seconds=12,
        max_concurrent_runs=3,
        cancel_grace_seconds=2,
        network="bridge",
        engine_retry_seconds=7,
    )


def test_services_without_action_settings_take_the_servers_defaults(store):
    services = Services.create(store)
    assert services.actions.settings == ActionSettings.from_settings(Settings())


def test_an_engine_that_stops_answering_fails_the_run_or_refuses_it(store, tmp_path):
    """Answering /_ping only: the run is accepted and FAILS naming the engine once its first
    real call times out; once /_ping goes unanswered too, ExecuteAction is UNAVAILABLE."""
    from porter_bundle.executor import ContainerExecutor
    from tests.engine import WedgedEngine

    with WedgedEngine(tmp_path / "wedged.sock", ping=True) as wedged:
        services = Services.create(
            store,
            executor=lambda: ContainerExecutor(
                wedged.url, probe_timeout_seconds=1, request_timeout_seconds=1
            ),
            action_settings=ActionSettings(
                run_timeout_seconds=60,
                max_concurrent_runs=1,
                cancel_grace_seconds=1,
                network=None,
                engine_retry_seconds=2,
            ),
        )
        add_installation(services)
        services.bundles.create(REF, json.dumps({**BUNDLE, "parameters": {}, "credentials": {}}))

        async def go() -> None:
            run = await services.actions.execute(ActionRequest(NS, NAME, "install"))
            await asyncio.wait_for(services.actions.wait_idle(), 30)
            failed = services.runs.get(NS, NAME, run.id)
            assert failed.state == RUN_STATE_FAILED
            assert wedged.url in failed.message and "did not answer in time" in failed.message
            wedged.answers_ping = False
            with pytest.raises(Unavailable) as err:
                await asyncio.wait_for(
                    services.actions.execute(ActionRequest(NS, NAME, "install", force=True)), 30
                )
            assert err.value.reason == "CONTAINER_ENGINE_UNAVAILABLE"
            assert wedged.url in err.value.message
            assert len(services.runs.active()) == 0

        asyncio.run(go())


def test_a_run_canceling_at_a_restart_is_stopped_and_ends_canceled(store, fake):
    services = Services.create(store, executor=lambda: fake)
    services.bundles.create(REF, json.dumps(BUNDLE))
    add_installation(services)
    runs = services.runs
    run, _ = runs.create(NS, NAME, NewRun(action=1, bundle_digest=services.bundles.get(REF).digest))
    runs.start(run.id)
    assert runs.mark_canceling(run.id).canceling  # CancelRun answered, then the crash
    assert runs.mark_canceling(run.id).canceling  # again: unchanged
    # The container ended by the SIGTERM of another process: no `canceled` in its result.
    fake.recoverable[run.id] = ContainerResult(exit_code=143, logs=b"got TERM\n")

    async def go() -> None:
        await services.actions.recover()
        await services.actions.wait_idle()

    asyncio.run(go())
    ended = runs.get(NS, NAME, run.id)
    assert ended.state == RUN_STATE_CANCELED and ended.canceling and ended.message == "canceled"
    assert run.id in fake.canceled  # the new process sent the stop again
    assert runs.mark_canceling(run.id) is None  # ended: nothing to mark


def test_an_engine_that_stays_unreachable_fails_the_run_after_engine_retry(store):
    """The run stays RUNNING saying the engine is unreachable, and FAILS once it stayed so
    for engine_retry_seconds."""
    from tests.fake_executor import FlakyEngine, services_with

    fake = FlakyEngine()
    services = services_with(store, fake, engine_retry=2)
    add_installation(services)
    services.bundles.create(REF, json.dumps({**BUNDLE, "parameters": {}, "credentials": {}}))

    async def go() -> None:
        run = await services.actions.execute(ActionRequest(NS, NAME, "install"))
        await wait_until_async(
            lambda: "unreachable" in services.runs.current(run.id).message, "the engine's note"
        )
        assert services.runs.current(run.id).state == RUN_STATE_RUNNING
        await asyncio.wait_for(services.actions.wait_idle(), 30)
        failed = services.runs.current(run.id)
        assert failed.state == RUN_STATE_FAILED
        assert failed.message.startswith("the container engine stayed unreachable for 2s")
        assert "unix:///flaky.sock" in failed.message

    asyncio.run(go())


def test_a_run_canceled_while_the_engine_is_unreachable_ends_canceled(store):
    from tests.fake_executor import FlakyEngine, services_with

    fake = FlakyEngine()
    services = services_with(store, fake)
    add_installation(services)
    services.bundles.create(REF, json.dumps({**BUNDLE, "parameters": {}, "credentials": {}}))

    async def go() -> None:
        run = await services.actions.execute(ActionRequest(NS, NAME, "install"))
        await wait_until_async(
            lambda: "unreachable" in services.runs.current(run.id).message, "the engine's note"
        )
        marked = await services.actions.cancel(NS, NAME, run.id)
        assert marked is not None and marked.canceling
        fake.recoverable[run.id] = ContainerResult(exit_code=143, logs=b"started\nbye\n")
        fake.down.clear()  # the engine answers again: the cancel is sent, then re-attached
        await asyncio.wait_for(services.actions.wait_idle(), 30)
        ended = services.runs.current(run.id)
        assert ended.state == RUN_STATE_CANCELED and ended.message == "canceled"
        assert fake.canceled == {run.id} and fake.removed == [run.id]
        assert services.runs.log_from(run.id, 0) == b"started\nbye\n"

    asyncio.run(go())


class LateEngine(FakeExecutor):
    """An engine that does not answer (ping) until the test says it is up."""

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()

    async def ping(self) -> None:
        if not self.up.is_set():
            raise ExecutorUnavailable("the container engine at unix:///late.sock does not answer")


def late_services(store, engine: LateEngine, engine_retry: float) -> Services:
    """Services whose executor cannot be made until ``engine.up`` (as the container
    executor's first connection fails while the engine is down)."""

    def executor() -> FakeExecutor:
        if not engine.up.is_set():
            raise ExecutorUnavailable("the container engine at unix:///late.sock does not answer")
        return engine

    return Services.create(
        store,
        executor=executor,
        action_settings=ActionSettings(
            run_timeout_seconds=30,
            max_concurrent_runs=2,
            cancel_grace_seconds=1,
            network=None,
            engine_retry_seconds=engine_retry,
        ),
    )


def left_running(services: Services) -> str:
    services.bundles.create(REF, json.dumps(BUNDLE))
    add_installation(services)
    digest = services.bundles.get(REF).digest
    run, _ = services.runs.create(NS, NAME, NewRun(action=1, bundle_digest=digest))
    services.runs.start(run.id)
    return run.id


def test_an_engine_down_at_start_up_is_waited_for_and_the_runs_recovered(store):
    """A short outage across a restart fails no run: it stays RUNNING until the engine
    answers, then is re-attached as usual."""
    engine = LateEngine()
    services = late_services(store, engine, engine_retry=60)
    run_id = left_running(services)
    engine.recoverable[run_id] = ContainerResult(exit_code=0, outputs=GOOD_OUTPUTS, logs=b"ok\n")

    async def go() -> None:
        await services.actions.recover()
        await asyncio.sleep(1.5)  # tried again at least once, still down
        assert services.runs.current(run_id).state == RUN_STATE_RUNNING
        engine.up.set()
        await wait_until_async(
            lambda: services.runs.current(run_id).state != RUN_STATE_RUNNING, "the recovery"
        )
        await services.actions.close()

    asyncio.run(go())
    ended = services.runs.current(run_id)
    assert ended.state == RUN_STATE_SUCCEEDED, ended.message
    assert services.runs.log_from(run_id, 0) == b"ok\n"
    assert engine.removed == [run_id]


def test_an_engine_that_stays_down_after_a_restart_fails_the_runs_after_engine_retry(store):
    engine = LateEngine()
    services = late_services(store, engine, engine_retry=2)
    if not services.runs.single_process:
        pytest.skip("one process per SQLite file: on PostgreSQL a replica reaching its engine "
                    "takes the runs over (tests/service/test_replicas.py)")  # fmt: skip
    run_id = left_running(services)

    async def go() -> None:
        await services.actions.recover()
        assert services.runs.current(run_id).state == RUN_STATE_RUNNING  # not failed at once
        await wait_until_async(
            lambda: services.runs.current(run_id).state != RUN_STATE_RUNNING, "the failure"
        )
        await services.actions.close()

    asyncio.run(go())
    failed = services.runs.current(run_id)
    assert failed.state == RUN_STATE_FAILED
    assert failed.message.startswith(
        "the server restarted and could not reach the container engine for 2s: "
    ), failed.message
    assert "unix:///late.sock" in failed.message
    assert services.runs.active() == []
