"""The structured log: JSON lines with fixed fields, run lifecycle events, masking.

The events come from the real action service over a real SQLite store; the executor is the
scripted one at its boundary (the lifecycle against a real engine, kill -9 included, is in
test_logs_engine.py)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource
from porter_bundle.executor import ContainerResult
from porter_bundle.observability.logs import RunLifecycleLog, handler
from porter_bundle.service import ActionRequest, Services
from porter_bundle.service.redact import MASK, Redactor, register, unregister
from porter_bundle.service.runs import NewRun
from tests.fake_executor import FakeExecutor, services_with
from tests.helpers import wait_until_async
from tests.service.action_bundle import BUNDLE, NS, REF, src

SECRET = "tok-never-logged-7f3a"
PLAIN = {**BUNDLE, "parameters": {}, "outputs": {}}


class JsonLog:
    """The JSON lines a handler wrote, parsed."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def events(self, run_id: str) -> list[str]:
        return [line["event"] for line in self.lines if line.get("run_id") == run_id]


@contextlib.contextmanager
def json_log(name: str = "porter_bundle") -> Iterator[JsonLog]:
    log = JsonLog()
    made = handler(log.stream, "json")
    logger = logging.getLogger(name)
    logger.addHandler(made)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield log
    finally:
        logger.removeHandler(made)
        logger.setLevel(old)


def test_a_json_line_has_the_fixed_fields_and_masks_secrets_everywhere():
    register("owner", Redactor([SECRET]))
    try:
        with json_log("porter_bundle.test") as log:
            logger = logging.getLogger("porter_bundle.test")
            logger.info("hello %s", SECRET, extra={"detail": f"why {SECRET}", "run_id": "R1"})
            try:
                raise RuntimeError(f"boom {SECRET}")
            except RuntimeError:
                logger.exception("failed")
    finally:
        unregister("owner")
    text = log.stream.getvalue()
    assert SECRET not in text
    first, second = log.lines
    assert set(first) == {"time", "level", "logger", "message", "detail", "run_id"}
    assert first["time"].endswith("Z") and first["level"] == "INFO"
    assert first["logger"] == "porter_bundle.test"
    assert first["message"] == f"hello {MASK}" and first["detail"] == f"why {MASK}"
    assert second["level"] == "ERROR" and f"RuntimeError: boom {MASK}" in second["exception"]


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def services(store, fake) -> Services:
    made = services_with(store, fake)
    made.bundles.create(REF, json.dumps(PLAIN))
    made.credential_sets.create(
        CredentialSet(
            namespace=NS,
            name="creds",
            credentials=[
                NamedValueSource(name="token", source=src(value=SECRET)),
                NamedValueSource(name="kubeconfig", source=src(value="apiVersion: v1")),
            ],
        )
    )
    made.actions.observers.add(RunLifecycleLog())
    return made


def add_installation(services: Services, name: str) -> None:
    services.installations.create(
        Installation(
            namespace=NS,
            name=name,
            bundle=BundleReference(repository="localhost:5000/app", tag="v1.0.0"),
            credential_sets=["creds"],
        )
    )


def test_each_step_of_a_run_is_one_info_line(services, fake):
    for name in ("ok", "bad", "slow", "stopped", "crash"):
        add_installation(services, name)

    def behaviour(spec) -> ContainerResult:
        name = spec.env["CNAB_INSTALLATION_NAME"]
        if name == "bad":
            return ContainerResult(exit_code=3)
        if name == "slow":
            return ContainerResult(exit_code=137, timed_out=True)
        if name == "crash":
            raise RuntimeError(f"executor bug holding {spec.env['TOKEN']}")
        return ContainerResult(exit_code=0)

    fake.behaviour = behaviour

    async def go() -> dict[str, str]:
        ids = {}
        for name in ("ok", "bad", "slow", "crash"):
            ids[name] = (await services.actions.execute(ActionRequest(NS, name, "install"))).id
        await services.actions.wait_idle()
        fake.hold.set()
        run = await services.actions.execute(ActionRequest(NS, "stopped", "install"))
        ids["stopped"] = run.id
        await wait_until_async(
            lambda: bool(fake.specs) and fake.specs[-1].run_id == run.id, "the run to start"
        )
        await services.actions.cancel(NS, "stopped", run.id)
        await services.actions.wait_idle()
        return ids

    with json_log() as log:
        ids = asyncio.run(go())
    assert SECRET not in log.stream.getvalue()
    assert log.events(ids["ok"]) == ["run.accepted", "run.started", "run.finished"]
    assert log.events(ids["bad"])[-1] == "run.finished"
    assert log.events(ids["slow"])[-1] == "run.timed_out"
    assert log.events(ids["stopped"]) == [
        "run.accepted",
        "run.started",
        "run.cancel_requested",
        "run.canceled",
    ]
    crash = [line for line in log.lines if line.get("run_id") == ids["crash"]]
    incident = crash[-1]["incident"]
    assert crash[-1]["event"] == "run.finished" and crash[-1]["result"] == "failed"
    assert incident and incident in crash[-1]["detail"]
    # The unexpected error's traceback is logged, with the credential masked.
    (trace,) = [line for line in log.lines if "exception" in line]
    assert f"executor bug holding {MASK}" in trace["exception"] and incident in trace["message"]

    by_event = {(line.get("run_id"), line.get("event")): line for line in log.lines}
    accepted = by_event[(ids["ok"], "run.accepted")]
    assert accepted["level"] == "INFO" and accepted["logger"] == "porter_bundle.runs"
    assert {k: accepted[k] for k in ("namespace", "installation", "action", "result")} == {
        "namespace": NS,
        "installation": "ok",
        "action": "install",
        "result": "pending",
    }
    assert accepted["principal"] == "local"  # no authentication: the local caller
    finished = by_event[(ids["ok"], "run.finished")]
    assert finished["result"] == "succeeded" and finished["duration_seconds"] >= 0
    assert ids["ok"] in finished["message"] and "succeeded" in finished["message"]
    bad = by_event[(ids["bad"], "run.finished")]
    assert bad["result"] == "failed" and "exited with status 3" in bad["detail"]
    assert bad["cause"] == "exit_code" and "cause" not in finished
    assert crash[-1]["cause"] == "internal"
    timed_out = by_event[(ids["slow"], "run.timed_out")]
    assert (timed_out["result"], timed_out["cause"]) == ("failed", "timeout")
    assert by_event[(ids["stopped"], "run.canceled")]["result"] == "canceled"


def test_recovery_logs_each_run_it_finds(services, fake):
    for name in ("alive", "vanished", "never"):
        add_installation(services, name)
    runs = services.runs
    digest = services.bundles.get(REF).digest
    alive, _ = runs.create(NS, "alive", NewRun(action=1, bundle_digest=digest))
    runs.start(alive.id)
    vanished, _ = runs.create(NS, "vanished", NewRun(action=1, bundle_digest=digest))
    runs.start(vanished.id)
    never, _ = runs.create(NS, "never", NewRun(action=1, bundle_digest=digest))
    fake.recoverable[alive.id] = ContainerResult(exit_code=0)
    orphan = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    fake.orphan_ids = [orphan]

    async def go() -> None:
        await services.actions.recover()
        await services.actions.wait_idle()

    with json_log() as log:
        asyncio.run(go())
    assert log.events(alive.id) == ["run.recovered", "run.finished"]
    assert log.events(vanished.id) == ["run.recovery_failed"]
    assert log.events(never.id) == ["run.recovery_failed"]
    assert log.events(orphan) == ["run.orphan_removed"]
    failed = next(line for line in log.lines if line.get("run_id") == vanished.id)
    assert failed["result"] == "failed" and "vanished" in failed["detail"]
    assert failed["cause"] == "recovery"


def test_text_lines_say_the_same(services, fake):
    add_installation(services, "ok")
    stream = io.StringIO()
    made = handler(stream, "text")
    logger = logging.getLogger("porter_bundle.runs")
    logger.addHandler(made)
    logger.setLevel(logging.INFO)

    async def go() -> str:
        run = await services.actions.execute(ActionRequest(NS, "ok", "install"))
        await services.actions.wait_idle()
        return run.id

    try:
        run_id = asyncio.run(go())
    finally:
        logger.removeHandler(made)
        logger.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert (
        f"INFO porter_bundle.runs: run {run_id} (install of {NS}/ok) accepted (by local)"
        in lines[0]
    )
    assert "finished: succeeded after" in lines[2]
