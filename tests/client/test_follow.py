"""``porter-bundle logs`` and ``porter-bundle runs watch``: the real command against a real server.

The run's output is scripted (tests/fake_executor.py), so each check knows what was written
when; the commands run as subprocesses, exactly as a user starts them.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter_bundle.config import Settings
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from tests.fake_executor import ScriptedExecutor

BIN = Path(sys.executable).with_name("porter-bundle")
NS, NAME = "dev", "app"
DEADLINE = 20.0
BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "app",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/app-installer:v1"}],
    "actions": {"tick": {"stateless": True, "modifies": False}},
}


@pytest.fixture
def scripted() -> ScriptedExecutor:
    return ScriptedExecutor()


@pytest.fixture
def services(store, scripted) -> Services:
    return Services.create(
        store,
        executor=lambda: scripted,
        action_settings=ActionSettings(
            run_timeout_seconds=60,
            max_concurrent_runs=4,
            cancel_grace_seconds=10,
            network=None,
            engine_retry_seconds=60,
        ),
    )


@pytest.fixture
def server_settings() -> Settings:
    return Settings(address="127.0.0.1:0", stream_heartbeat_seconds=0.5)


@pytest.fixture
def app(stub, server, scripted):
    stub.CreateBundle(
        pb.CreateBundleRequest(reference="localhost:5000/app:v1", bundle_json=json.dumps(BUNDLE))
    )
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository="localhost:5000/app", tag="v1")
    )
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    yield
    for run_id in list(scripted.queues):  # a failed test may leave its run going
        scripted.exit(run_id, 0)
    asyncio.run_coroutine_threadsafe(server.services.actions.wait_idle(), server.loop).result(10)


def start_run(stub, scripted: ScriptedExecutor) -> str:
    run = stub.ExecuteAction(pb.ExecuteActionRequest(namespace=NS, name=NAME, action="tick")).run
    scripted.wait_started(run.id)
    return str(run.id)


@pytest.fixture
def command(server) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts ``porter-bundle ARGS --server <the test server>``; kills leftovers at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(BIN), *args, "--server", server.target],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEADLINE)


def read_until(proc: subprocess.Popen[bytes], expected: bytes, *, stderr: bool = False) -> bytes:
    """Reads the command's stdout (or stderr) as it comes until ``expected`` is in it."""
    stream = proc.stderr if stderr else proc.stdout
    assert stream is not None
    seen = b""
    deadline = time.monotonic() + DEADLINE
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while expected not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no {expected!r} in {seen!r}")
            data = stream.read1(65536)  # type: ignore[attr-defined]
            if not data:
                raise AssertionError(f"output ended without {expected!r}: {seen!r}")
            seen += data
    return seen


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, str]:
    out, err = proc.communicate(timeout=DEADLINE)
    return proc.returncode, out, err.decode()


@pytest.mark.slow
def test_logs_follow_prints_as_written_and_fails_with_the_run(command, stub, app, scripted):
    run_id = start_run(stub, scripted)
    proc = command("logs", run_id, "--follow", "-n", NS, "-i", NAME)
    scripted.write(run_id, b"one\n")
    printed = read_until(proc, b"one\n")  # while the run is still going
    assert proc.poll() is None
    scripted.write(run_id, b"two\n")
    scripted.exit(run_id, 3)
    code, rest, err = finish(proc)
    assert printed + rest == b"one\ntwo\n"
    assert code == 4 and f"run {run_id} FAILED" in err and "status 3" in err  # the action failed


@pytest.mark.slow
def test_logs_by_id_alone_and_resume_offset(command, stub, app, scripted):
    run_id = start_run(stub, scripted)
    scripted.write(run_id, b"hello\nworld\n")
    scripted.exit(run_id, 0)
    code, out, _ = finish(command("logs", run_id, "--follow"))
    assert (code, out) == (0, b"hello\nworld\n")
    code, out, _ = finish(command("logs", run_id, "--offset", "6"))
    assert (code, out) == (0, b"world\n")
    code, out, _ = finish(command("logs", "latest", "-n", NS, "-i", NAME))
    assert (code, out) == (0, b"hello\nworld\n")


@pytest.mark.slow
def test_logs_errors_exit_1_and_bad_usage_2(command, app):
    code, out, err = finish(command("logs", "01JDZZZZZZZZZZZZZZZZZZZZZZ"))
    assert code == 1 and out == b"" and "NOT_FOUND" in err  # the server refused
    code, _, err = finish(command("logs", "latest", "-n", NS))
    assert code == 2 and "--namespace needs --installation" in err
    code, _, err = finish(command("runs", "watch"))
    assert code == 2


@pytest.mark.slow
def test_runs_watch_a_run_prints_each_state_and_exits_with_its_result(command, stub, app, scripted):
    run_id = start_run(stub, scripted)
    proc = command("runs", "watch", "-n", NS, "-i", NAME, run_id)
    first = read_until(proc, b"RUNNING")
    scripted.exit(run_id, 0)
    code, rest, _ = finish(proc)
    lines = (first + rest).decode().splitlines()
    assert code == 0
    assert [line.split()[1:4] for line in lines] == [
        [run_id, "tick", "RUNNING"],
        [run_id, "tick", "SUCCEEDED"],
    ]


@pytest.mark.slow
def test_runs_watch_an_installation_goes_on_until_interrupted(command, stub, app, scripted):
    proc = command("runs", "watch", "-n", NS, "-i", NAME)
    read_until(proc, b"watching dev/app: no run yet", stderr=True)  # subscribed
    run_id = start_run(stub, scripted)
    scripted.exit(run_id, 0)
    seen = read_until(proc, b"SUCCEEDED")
    assert [line.split()[3] for line in seen.decode().splitlines()] == [
        "PENDING",
        "RUNNING",
        "SUCCEEDED",
    ]
    proc.send_signal(signal.SIGINT)
    code, _, _ = finish(proc)
    assert code == 130


@pytest.mark.slow
def test_logs_follow_calls_again_when_the_server_goes_away(command, server, stub, app, scripted):
    run_id = start_run(stub, scripted)
    scripted.write(run_id, b"before\n")
    proc = command("logs", run_id, "--follow", "--reconnect", "2")
    read_until(proc, b"before\n")
    server.stop(5)
    code, _, err = finish(proc)
    assert code == 3 and "calling again" in err and "gave up" in err
    scripted.exit(run_id, 0)


def test_stream_heartbeat_must_be_a_positive_number_of_seconds(capsys):
    from porter_bundle.cli import main

    for bad in ("0", "-1", "soon"):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--stream-heartbeat", bad])
        assert exit_.value.code == 2
    assert "--stream-heartbeat" in capsys.readouterr().err
