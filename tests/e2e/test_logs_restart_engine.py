"""Resumed logs never lie, and accepted work is not lost, across a crash of the server: a real
server process, kill -9, a new process on the same database, real Podman.

The invocation image prints a credential (masked live), then a sensitive output it wrote
(only known as a secret once the run ends: masked in place then, keeping every offset), then
more after the crash. A follower resumes at the offset it had and gets exactly the rest; any
offset it received returns exactly the stored log from there, before and after the run ends.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Run,
)
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from tests.helpers import wait_until
from tests.test_cli import start

pytestmark = pytest.mark.slow
NS = "dev"
TOKEN = "tok-logs-e2e-4242"

SCRIPT = r"""#!/bin/sh
out=/cnab/app/outputs
mkdir -p $out
echo "installing $CNAB_INSTALLATION_NAME with token $TOKEN"
printf 'admin-%s' "$CNAB_REVISION" > $out/admin
echo "admin secret is $(cat $out/admin)"
sleep 6
echo "done install"
"""


def bundle(image: str) -> dict:
    return {
        "schemaVersion": "v1.0.0",
        "name": "logs-app",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {"secret": {"type": "string", "writeOnly": True}},
        "credentials": {"token": {"env": "TOKEN", "required": True}},
        "outputs": {"admin": {"definition": "secret", "path": "/cnab/app/outputs/admin"}},
    }


def serve(db: Path, podman_host: str, tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    return start(
        tmp_path,
        {},
        "--address",
        "127.0.0.1:0",
        "--database",
        f"sqlite:///{db}",
        "--container-host",
        podman_host,
        "--max-concurrent-runs",
        "1",
    )


def stored_from(stub, run_id: str, offset: int) -> tuple[bytes, Run]:
    """The log from ``offset`` as a non-following StreamRunLogs returns it, and the run."""
    data, run = b"", Run()
    position = offset
    for message in stub.StreamRunLogs(
        pb.StreamRunLogsRequest(namespace=NS, name="first", run_id=run_id, offset=offset),
        timeout=30,
    ):
        if message.WhichOneof("event") == "chunk":
            assert message.chunk.offset == position
            data += message.chunk.data
            position += len(message.chunk.data)
        elif message.WhichOneof("event") == "run":
            run = message.run
    return data, run


def test_resumed_logs_and_accepted_runs_survive_a_crash(
    tmp_path, test_image, podman_service, podman_host
):
    image = test_image("logs-app", SCRIPT)
    db = tmp_path / "logs.db"
    chunks: list[tuple[int, bytes]] = []  # (offset, data) as the follower received them
    proc, port = serve(db, podman_host, tmp_path)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            stub.CreateBundle(
                pb.CreateBundleRequest(
                    reference="localhost:5000/logs-app:v1", bundle_json=json.dumps(bundle(image))
                )
            )
            token = ValueSource()
            json_format.ParseDict(TOKEN, token.value)
            stub.CreateCredentialSet(
                pb.CreateCredentialSetRequest(
                    credential_set=CredentialSet(
                        namespace=NS,
                        name="creds",
                        credentials=[NamedValueSource(name="token", source=token)],
                    )
                )
            )
            for name in ("first", "second"):
                stub.CreateInstallation(
                    pb.CreateInstallationRequest(
                        installation=Installation(
                            namespace=NS,
                            name=name,
                            bundle=BundleReference(repository="localhost:5000/logs-app", tag="v1"),
                            credential_sets=["creds"],
                        )
                    )
                )
            first = stub.ExecuteAction(
                pb.ExecuteActionRequest(namespace=NS, name="first", action="install")
            ).run
            # The only slot is taken: this one is accepted and waits PENDING.
            second = stub.ExecuteAction(
                pb.ExecuteActionRequest(
                    namespace=NS, name="second", action="install", request_id="req-second"
                )
            ).run
            assert second.state == RUN_STATE_PENDING
            follower = stub.StreamRunLogs(
                pb.StreamRunLogsRequest(namespace=NS, name="first", run_id=first.id, follow=True),
                timeout=60,
            )
            for message in follower:
                if message.WhichOneof("event") == "chunk":
                    chunks.append((message.chunk.offset, message.chunk.data))
                    if b"admin secret is" in b"".join(c for _, c in chunks):
                        break
            live = b"".join(c for _, c in chunks)
            assert TOKEN.encode() not in live  # masked before a byte was served
            assert b"with token " + b"*" * len(TOKEN) + b"\n" in live
            # Before the run ends, resuming at any received offset gives what was received.
            for offset, _ in chunks:
                data, run = stored_from(stub, first.id, offset)
                assert run.state == RUN_STATE_RUNNING
                assert data[: len(live) - offset] == live[offset:]
            follower.cancel()
            assert (
                stub.GetInstallationRun(
                    pb.GetInstallationRunRequest(namespace=NS, name="second", run_id=second.id)
                ).run.state
                == RUN_STATE_PENDING
            )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)

    proc, port = serve(db, podman_host, tmp_path)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(ch)
            # The follower resumes where it was, across the restart, to the end.
            resumed, position, final = b"", len(live), Run()
            for message in stub.StreamRunLogs(
                pb.StreamRunLogsRequest(
                    namespace=NS, name="first", run_id=first.id, offset=position, follow=True
                ),
                timeout=90,
            ):
                if message.WhichOneof("event") == "chunk":
                    assert message.chunk.offset == position
                    resumed += message.chunk.data
                    position += len(message.chunk.data)
                    chunks.append((message.chunk.offset, message.chunk.data))
                elif message.WhichOneof("event") == "run":
                    final = message.run
            assert final.state == RUN_STATE_SUCCEEDED, final.message
            assert resumed.endswith(b"done install\n")
            stored, _ = stored_from(stub, first.id, 0)
            # The stored log is the live log: same length, the same bytes, except the
            # sensitive output, masked in place once the run ended.
            admin = f"admin-{first.id}".encode()
            assert admin in live and admin not in stored
            assert stored == (live + resumed).replace(admin, b"*" * len(admin))
            # Any offset the follower received returns exactly the rest of the stored log.
            for offset, data in chunks:
                rest, run = stored_from(stub, first.id, offset)
                assert rest == stored[offset:] and run.state == RUN_STATE_SUCCEEDED
                assert len(rest) >= len(data)
            end, _ = stored_from(stub, first.id, len(stored))
            assert end == b""
            # The run accepted before the crash started after it; a retry returns it.
            done = wait_until(
                lambda: (
                    r
                    if (
                        r := stub.GetInstallationRun(
                            pb.GetInstallationRunRequest(
                                namespace=NS, name="second", run_id=second.id
                            )
                        ).run
                    ).state
                    not in (RUN_STATE_PENDING, RUN_STATE_RUNNING)
                    else None
                ),
                "the accepted run to finish",
                timeout=60,
            )
            assert done.state == RUN_STATE_SUCCEEDED, done.message
            retry = stub.ExecuteAction(
                pb.ExecuteActionRequest(
                    namespace=NS, name="second", action="install", request_id="req-second"
                )
            ).run
            assert retry.id == second.id and retry.state == RUN_STATE_SUCCEEDED
            logs = stub.GetInstallationRunLogs(
                pb.GetInstallationRunLogsRequest(namespace=NS, name="second", run_id=second.id)
            ).logs
            assert "done install" in logs and TOKEN not in logs
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert time.monotonic() - started < 30
