"""The realistic action, part of the ``actions`` benchmark: an install of a bundle with nine
parameters (env, file and ``CNAB_P_*`` destinations, one sensitive), two credentials (one env,
one file), four outputs (one sensitive) and five log lines, against bare ``podman run`` of the
same image with the same environment and the same files.

The bare side's environment and files are the very ones the server gives the container: they
come from :func:`porter_bundle.service.actions.contract.container_spec` on the same inputs, so
the two sides cannot drift apart. Files are bind-mounted read-only; the image writes its outputs
in both cases (the bare side leaves them in the container, which ``--rm`` removes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from bench.procs import ServerProcess
from bench.report import Figure, action_figures
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import RUN_STATE_SUCCEEDED, Run
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter_bundle.bundles.images import pin_invocation_image
from porter_bundle.executor import LABEL_RUN_ID
from porter_bundle.service.actions import ActionSettings
from porter_bundle.service.actions.contract import container_spec
from porter_bundle.service.bundles import ResolvedBundle
from porter_bundle.service.inputs import ResolvedInputs
from tests.engine import Engine

TARGET_REALISTIC_RATIO = 1.15
NAMESPACE = "bench"
NAME = "realistic"
REPOSITORY = "localhost:5000/bench-realistic"
TAG = "v1"
POLL_SECONDS = 0.005

RUN_SCRIPT = r"""#!/bin/sh
echo "deploying $CNAB_INSTALLATION_NAME to $REGION ($TIER, $REPLICAS replicas, debug $DEBUG)"
echo "domain $(cat /cnab/app/params/domain), timeout $CNAB_P_TIMEOUT s, tags $TAGS"
echo "kubeconfig of $(wc -c < /root/.kube/config) bytes, token $API_TOKEN, db $DB_PASSWORD"
out=/cnab/app/outputs
mkdir -p $out
printf 'https://%s' "$(cat /cnab/app/params/domain)" > $out/endpoint
printf '8443' > $out/port
printf 'adm-%s' "$CNAB_REVISION" > $out/admin_password
printf '{"replicas":%s,"tags":%s}' "$REPLICAS" "$TAGS" > $out/manifest
echo "wrote 4 outputs"
echo "done $CNAB_ACTION"
"""

PARAMETERS: dict[str, Any] = {
    "region": "eu-west-1",
    "replicas": 3,
    "tier": "gold",
    "debug": False,
    "domain": "app.example.com",
    "config": {"feature": "on", "limits": {"cpu": 2}},
    "db_password": "db-pw-3f9c1a7e",
    "timeout": 300,
    "tags": ["web", "prod"],
}
CREDENTIALS = {"api_token": "tok-8d2b6e41c0", "kubeconfig": "apiVersion: v1\nkind: Config\n"}


def bundle(image: str) -> dict[str, Any]:
    """The realistic bundle.json: 9 parameters, 2 credentials, 4 outputs."""
    return {
        "schemaVersion": "v1.0.0",
        "name": "bench-realistic",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {
            "string": {"type": "string"},
            "integer": {"type": "integer", "minimum": 1},
            "tier": {"type": "string", "enum": ["silver", "gold"]},
            "boolean": {"type": "boolean"},
            "object": {"type": "object"},
            "secret": {"type": "string", "writeOnly": True},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "parameters": {
            "region": {"definition": "string", "destination": {"env": "REGION"}},
            "replicas": {"definition": "integer", "destination": {"env": "REPLICAS"}},
            "tier": {"definition": "tier", "destination": {"env": "TIER"}},
            "debug": {"definition": "boolean", "destination": {"env": "DEBUG"}},
            "domain": {"definition": "string", "destination": {"path": "/cnab/app/params/domain"}},
            "config": {
                "definition": "object",
                "destination": {"path": "/cnab/app/params/config.json"},
            },
            "db_password": {"definition": "secret", "destination": {"env": "DB_PASSWORD"}},
            "timeout": {"definition": "integer", "destination": {}},
            "tags": {"definition": "tags", "destination": {"env": "TAGS"}},
        },
        "credentials": {
            "api_token": {"env": "API_TOKEN", "required": True},
            "kubeconfig": {"path": "/root/.kube/config", "required": True},
        },
        "outputs": {
            "endpoint": {"definition": "string", "path": "/cnab/app/outputs/endpoint"},
            "port": {"definition": "integer", "path": "/cnab/app/outputs/port"},
            "admin_password": {"definition": "secret", "path": "/cnab/app/outputs/admin_password"},
            "manifest": {"definition": "object", "path": "/cnab/app/outputs/manifest"},
        },
    }


def _create(stub: porter_bundle_pb2_grpc.PorterBundleStub, doc: dict[str, Any]) -> Installation:
    stub.CreateBundle(
        pb.CreateBundleRequest(reference=f"{REPOSITORY}:{TAG}", bundle_json=json.dumps(doc))
    )
    entries = []
    for name, text in CREDENTIALS.items():
        source = ValueSource()
        json_format.ParseDict(text, source.value)
        entries.append(NamedValueSource(name=name, source=source))
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(namespace=NAMESPACE, name=NAME, credentials=entries)
        )
    )
    inst = Installation(
        namespace=NAMESPACE,
        name=NAME,
        bundle=BundleReference(repository=REPOSITORY, tag=TAG),
        credential_sets=[NAME],
    )
    inst.parameters.update(PARAMETERS)
    return stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation


def _install(stub: porter_bundle_pb2_grpc.PorterBundleStub) -> tuple[float, Run]:
    """Seconds from ExecuteAction to seeing the install SUCCEEDED (polled), and the run."""
    started = time.perf_counter()
    request = pb.ExecuteActionRequest(namespace=NAMESPACE, name=NAME, action="install", force=True)
    run: Run = stub.ExecuteAction(request, timeout=60).run
    get = pb.GetInstallationRunRequest(namespace=NAMESPACE, name=NAME, run_id=run.id)
    deadline = time.monotonic() + 120
    while run.state != RUN_STATE_SUCCEEDED:
        if run.complete_time.seconds or time.monotonic() > deadline:
            raise RuntimeError(f"run {run.id} ended in state {run.state}: {run.message}")
        time.sleep(POLL_SECONDS)
        run = stub.GetInstallationRun(get, timeout=60).run
    return time.perf_counter() - started, run


def wait_removed(engine: Engine, run_id: str) -> None:
    """Untimed, after a porter-bundle sample: until the engine has removed the run's container.
    The server removes it after the run is recorded (the client already saw SUCCEEDED); left
    to overlap the next sample, that removal would slow whichever side runs next."""
    deadline = time.monotonic() + 60
    label = f"label={LABEL_RUN_ID}={run_id}"
    while engine.podman("ps", "-a", "-q", "--filter", label).stdout.strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the container of run {run_id} was not removed within 60 s")
        time.sleep(0.02)


def _bare_argv(work: Path, image: str, doc: dict[str, Any], inst: Installation) -> list[str]:
    """``podman run`` with the env and files the server gives the same install."""
    run = Run(id="01BENCHREALISTIC0000000000", namespace=NAMESPACE, installation=NAME)
    inputs = ResolvedInputs(dict(PARAMETERS), frozenset({"db_password"}), dict(CREDENTIALS))
    settings = ActionSettings(
        run_timeout_seconds=3600,
        max_concurrent_runs=4,
        cancel_grace_seconds=10,
        network=None,
        engine_retry_seconds=60,
    )
    resolved = ResolvedBundle(f"{REPOSITORY}:{TAG}", "sha256:bench", json.dumps(doc))
    image_pin = pin_invocation_image(doc)
    spec = container_spec(inst, resolved, doc, "install", run, inputs, settings, image_pin)
    argv = ["run", "--rm", "--network", "none"]
    for key, value in spec.env.items():
        argv += ["-e", f"{key}={value}"]
    for n, (target, content) in enumerate(sorted(spec.files.items())):
        path = work / f"realistic-file-{n}"
        path.write_bytes(content)
        argv += ["-v", f"{path}:{target}:ro"]
    return [*argv, image, *spec.command]


def bench_realistic(
    engine: Engine,
    work: Path,
    start: Callable[[str], ServerProcess],
    samples: int,
    log: Callable[[str], None],
    details: dict[str, Any],
) -> list[Figure]:
    """The realistic install, ``samples`` per side alternating, after one warm-up each."""
    image = engine.image("bench-realistic", RUN_SCRIPT)
    doc = bundle(image)
    server = start("realistic")
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(channel)
            inst = _create(stub, doc)
            argv = _bare_argv(work, image, doc, inst)
            wait_removed(engine, _install(stub)[1].id)  # warm-up: the engine connection, the probe
            engine.podman(*argv)
            real: list[float] = []
            bare: list[float] = []
            stamps: list[dict[str, float]] = []
            for n in range(samples):
                for side in ("real", "bare") if n % 2 == 0 else ("bare", "real"):
                    if side == "real":
                        seconds, run = _install(stub)
                        wait_removed(engine, run.id)
                        real.append(seconds)
                        created = run.create_time.ToNanoseconds() / 1e9
                        begun = run.start_time.ToNanoseconds() / 1e9
                        ended = run.complete_time.ToNanoseconds() / 1e9
                        stamps.append({"queued": begun - created, "running": ended - begun})
                    else:
                        started = time.perf_counter()
                        engine.podman(*argv)
                        bare.append(time.perf_counter() - started)
                log(
                    f"  realistic {n + 1:2d}: porter-bundle {real[-1] * 1000:6.0f} ms   "
                    f"podman run {bare[-1] * 1000:6.0f} ms   ratio {real[-1] / bare[-1]:.2f}x"
                )
            logs = stub.GetInstallationRunLogs(
                pb.GetInstallationRunLogsRequest(namespace=NAMESPACE, name=NAME, run_id=run.id)
            ).logs
    finally:
        server.stop()
    if len(logs.splitlines()) != 5 or CREDENTIALS["api_token"] in logs:
        raise RuntimeError(f"the realistic install logged something unexpected: {logs!r}")
    details["action_realistic"] = {
        "porter_bundle_seconds": real,
        "bare_podman_run_seconds": bare,
        "server_stamps_seconds": stamps,
        "bare_command": ["podman", *argv],
    }
    return action_figures(
        "Realistic install (9 params, 2 creds, 4 outputs, 5 lines) / bare podman run",
        TARGET_REALISTIC_RATIO,
        f"{samples} each, alternating; medians",
        real,
        bare,
        stamps,
    )
