"""The JSON log of a real server process across kill -9 and restart: every run the restart
finds is logged (re-attached, failed on recovery, orphan removed), secrets never."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_FAILED, RUN_STATE_RUNNING, RUN_STATE_SUCCEEDED
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource
from porter_bundle.executor import LABEL_MANAGED, LABEL_RUN_ID
from tests.e2e.test_actions_engine import NS, execute, logs_of, value, wait_state
from tests.helpers import serve_process, wait_until

pytestmark = pytest.mark.slow

SECRET = "tok-crash-secret-91c2"
ORPHAN = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
SCRIPT = r"""#!/bin/sh
echo "started $CNAB_ACTION"
sleep 4
echo "finished"
"""


def read_json_log(path: Path) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be a JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def events_of(lines: list[dict[str, Any]], run_id: str) -> list[str]:
    return [line["event"] for line in lines if line.get("run_id") == run_id and "event" in line]


def test_the_json_log_names_every_run_a_restart_recovers(
    tmp_path, test_image, podman_service, podman_host
):
    image = test_image("log-crash-app", SCRIPT)
    bundle = {
        "schemaVersion": "v1.0.0",
        "name": "log-crash-app",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "credentials": {"token": {"env": "TOKEN"}},
    }
    db = tmp_path / "crash.db"
    names = ("first", "second", "vanished")
    before = tmp_path / "before.log"
    with before.open("w") as err:
        proc, port = serve_process(db, podman_host, "--log-format", "json", stderr=err)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            stub.CreateBundle(
                pb.CreateBundleRequest(
                    reference="localhost:5000/lc:v1", bundle_json=json.dumps(bundle)
                )
            )
            stub.CreateCredentialSet(
                pb.CreateCredentialSetRequest(
                    credential_set=CredentialSet(
                        namespace=NS,
                        name="creds",
                        credentials=[NamedValueSource(name="token", source=value(SECRET))],
                    )
                )
            )
            runs = {}
            for n in names:
                stub.CreateInstallation(
                    pb.CreateInstallationRequest(
                        installation=Installation(
                            namespace=NS,
                            name=n,
                            bundle=BundleReference(repository="localhost:5000/lc", tag="v1"),
                            credential_sets=["creds"],
                        )
                    )
                )
                runs[n] = execute(stub, "install", n).id
            for n, run_id in runs.items():
                wait_state(stub, run_id, n, states=(RUN_STATE_RUNNING,), timeout=60)
                wait_until(
                    lambda r=run_id, n=n: "started" in logs_of(stub, r, n),
                    f"the container of {n} to start",
                    timeout=30,
                )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    # While the server is down, one container disappears and a stray one appears.
    podman_service.podman("rm", "--force", f"porter-bundle-{runs['vanished'].lower()}")
    podman_service.podman(
        "create",
        "--label",
        f"{LABEL_MANAGED}=true",
        "--label",
        f"{LABEL_RUN_ID}={ORPHAN}",
        image,
        "/bin/true",
    )

    after = tmp_path / "after.log"
    with after.open("w") as err:
        proc, port = serve_process(db, podman_host, "--log-format", "json", stderr=err)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            for n in ("first", "second"):
                assert wait_state(stub, runs[n], n).state == RUN_STATE_SUCCEEDED
            assert wait_state(stub, runs["vanished"], "vanished").state == RUN_STATE_FAILED
            wait_until(lambda: "run.orphan_removed" in after.read_text(), "the orphan to be logged")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)

    first_life, second_life = read_json_log(before), read_json_log(after)
    for n in names:
        assert events_of(first_life, runs[n]) == ["run.accepted", "run.started"], n
    for n in ("first", "second"):
        assert events_of(second_life, runs[n]) == ["run.recovered", "run.finished"], n
    assert events_of(second_life, runs["vanished"]) == ["run.recovery_failed"]
    assert events_of(second_life, ORPHAN) == ["run.orphan_removed"]
    finished = next(
        line
        for line in second_life
        if line.get("event") == "run.finished" and line["run_id"] == runs["first"]
    )
    assert finished["result"] == "succeeded" and finished["installation"] == "first"
    assert finished["duration_seconds"] >= 3  # measured from the start, before the crash
    failed = next(line for line in second_life if line.get("run_id") == runs["vanished"])
    assert failed["result"] == "failed" and "vanished" in failed["detail"]
    for line in first_life + second_life:
        assert {"time", "level", "logger", "message"} <= line.keys()
    assert SECRET not in before.read_text() + after.read_text()
