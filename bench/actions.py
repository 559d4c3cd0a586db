"""The ``actions`` benchmark: running bundle actions in containers, against bare ``podman run``.

Both sides use one private Podman engine (tests/engine.py) and the same busybox image, whose
``/cnab/app/run`` exits at once:

* porter-bundle (``serve --container-host`` that engine, a fresh SQLite file) runs a stateless
  custom action: ExecuteAction, then GetInstallationRun every few milliseconds until the run has
  ended. Its executor creates the container, copies the files in, starts it, follows its log,
  waits for it, reads its outputs and removes it.
* the reference is ``podman run --rm --network none`` of the same image with the same
  environment and the same three files bind-mounted read-only, through the podman CLI on the
  same store.

Single runs alternate A/B; then a batch of actions on as many installations is submitted at
once and compared with the same number of sequential bare runs.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.procs import ServerProcess, start_porter_bundle
from bench.realistic import bench_realistic, wait_removed
from bench.report import Figure, action_figures
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
    Run,
)
from tests.engine import Engine, podman_engine

TARGET_ACTION_RATIO = 1.3
BATCH = 50
DEFAULT_MAX_CONCURRENT_RUNS = 4

NAMESPACE = "bench"
REPOSITORY = "localhost:5000/bench-noop"
TAG = "v1"
ACTION = "noop"
RUN_SCRIPT = "#!/bin/sh\nexit 0\n"
POLL_SECONDS = 0.005
"""Between two GetInstallationRun calls while one run is awaited."""
BATCH_POLL_SECONDS = 0.02
"""Between two looks at the oldest unfinished run of a batch."""
RUN_DEADLINE_SECONDS = 120.0
FINAL = (RUN_STATE_SUCCEEDED, RUN_STATE_FAILED, RUN_STATE_CANCELED)
CLAIMS_VERSION = "1.0.0-DRAFT+b5ed2f3"  # as src/porter_bundle/service/actions/contract.py
FILE_TARGETS = {
    "bundle.json": "/cnab/bundle.json",
    "image-map.json": "/cnab/app/image-map.json",
    "claim.json": "/cnab/claim.json",
}


@dataclass(frozen=True)
class ActionSettings:
    """How many samples and which server concurrencies."""

    samples: int = 15
    """Single runs per side (after one warm-up each)."""
    max_concurrent_runs: Sequence[int] = (DEFAULT_MAX_CONCURRENT_RUNS, 8)
    """One server, and one batch, per value."""


@dataclass
class _Bench:
    engine: Engine
    image: str
    bundle: dict[str, Any]
    work: Path
    log: Callable[[str], None]
    installations: dict[str, Installation] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _bundle(image: str) -> dict[str, Any]:
    return {
        "schemaVersion": "v1.0.0",
        "name": "bench-noop",
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "actions": {ACTION: {"stateless": True, "modifies": False}},
    }


def _seconds(stamp: Any) -> float:
    return float(stamp.ToNanoseconds()) / 1e9


# --- the porter-bundle side ------------------------------------------------------------


def _start_server(b: _Bench, database: Path, max_runs: int, label: str) -> ServerProcess:
    return start_porter_bundle(
        f"sqlite:///{database}",
        b.work / f"porter-bundle-{label}.log",
        "--container-host",
        b.engine.url,
        "--max-concurrent-runs",
        str(max_runs),
    )


def _create(stub: porter_bundle_pb2_grpc.PorterBundleStub, b: _Bench, names: list[str]) -> None:
    stub.CreateBundle(
        pb.CreateBundleRequest(reference=f"{REPOSITORY}:{TAG}", bundle_json=json.dumps(b.bundle))
    )
    for name in names:
        inst = Installation(
            namespace=NAMESPACE, name=name, bundle=BundleReference(repository=REPOSITORY, tag=TAG)
        )
        created = stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
        b.installations[name] = created.installation


def _execute(stub: porter_bundle_pb2_grpc.PorterBundleStub, name: str) -> Run:
    request = pb.ExecuteActionRequest(namespace=NAMESPACE, name=name, action=ACTION)
    run: Run = stub.ExecuteAction(request, timeout=60).run
    return run


def _get(stub: porter_bundle_pb2_grpc.PorterBundleStub, run: Run) -> Run:
    request = pb.GetInstallationRunRequest(
        namespace=NAMESPACE, name=run.installation, run_id=run.id
    )
    found: Run = stub.GetInstallationRun(request, timeout=60).run
    return found


def _await(stub: porter_bundle_pb2_grpc.PorterBundleStub, run: Run, poll: float) -> Run:
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while run.state not in FINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run.id} did not end in {RUN_DEADLINE_SECONDS:.0f}s")
        time.sleep(poll)
        run = _get(stub, run)
    return run


def _one_action(stub: porter_bundle_pb2_grpc.PorterBundleStub, name: str) -> tuple[float, Run]:
    """Seconds from ExecuteAction to seeing the run SUCCEEDED, and the ended run."""
    started = time.perf_counter()
    run = _await(stub, _execute(stub, name), POLL_SECONDS)
    seconds = time.perf_counter() - started
    if run.state != RUN_STATE_SUCCEEDED:
        raise RuntimeError(f"run {run.id} ended in state {run.state}: {run.message}")
    return seconds, run


def _batch(stub: porter_bundle_pb2_grpc.PorterBundleStub, names: list[str]) -> dict[str, Any]:
    """ExecuteAction on every installation at once; waits for all of them to end."""
    wall, started = time.time(), time.perf_counter()
    with ThreadPoolExecutor(len(names)) as pool:
        runs = list(pool.map(lambda n: _execute(stub, n), names))
    submitted = time.perf_counter() - started
    # Runs start in submission order (the server's slots are FIFO): awaiting them one after
    # the other costs the server one call every BATCH_POLL_SECONDS, not one per run.
    ended = [_await(stub, run, BATCH_POLL_SECONDS) for run in runs]
    observed = time.perf_counter() - started
    durations = [_seconds(r.complete_time) - _seconds(r.start_time) for r in ended]
    failed = [
        f"{r.installation}: {r.state} {r.message}" for r in ended if r.state != RUN_STATE_SUCCEEDED
    ]
    return {
        "succeeded": len(ended) - len(failed),
        "failed": failed,
        "submit_seconds": submitted,
        "run_seconds": durations,
        "observed_seconds": observed,
        # From the client's clock before the first call to the server's stamp on the last run's
        # end (one machine, one clock): free of the polling interval.
        "seconds": max(_seconds(r.complete_time) for r in ended) - wall,
    }


# --- the bare side ----------------------------------------------------------------------


def _bare_files(b: _Bench, inst: Installation) -> dict[str, Path]:
    """The three files the server gives a run, written once for the bind mounts."""
    claim = {
        "schemaVersion": CLAIMS_VERSION,
        "id": "01BENCHBARERUN0000000000000",
        "installation": inst.name,
        "namespace": inst.namespace,
        "revision": "01BENCHBARERUN0000000000000",
        "created": "2026-01-01T00:00:00Z",
        "action": ACTION,
        "bundle": b.bundle,
        "parameters": {},
    }
    contents = {"bundle.json": json.dumps(b.bundle), "image-map.json": "{}", "claim.json": claim}
    paths = {}
    for name, content in contents.items():
        path = b.work / f"bare-{inst.name}-{name}"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        paths[name] = path
    return paths


def _bare_argv(b: _Bench, inst: Installation, files: dict[str, Path]) -> list[str]:
    env = {
        "CNAB_ACTION": ACTION,
        "CNAB_INSTALLATION_NAME": inst.name,
        "CNAB_BUNDLE_NAME": b.bundle["name"],
        "CNAB_BUNDLE_VERSION": b.bundle["version"],
        "CNAB_REVISION": "01BENCHBARERUN0000000000000",
        "CNAB_CLAIMS_VERSION": CLAIMS_VERSION,
        "PORTER_INSTALLATION_NAMESPACE": inst.namespace,
        "PORTER_INSTALLATION_NAME": inst.name,
        "PORTER_INSTALLATION_ID": inst.id,
    }
    argv = ["run", "--rm", "--network", "none"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    for name, path in files.items():
        argv += ["-v", f"{path}:{FILE_TARGETS[name]}:ro"]
    return [*argv, b.image, "/cnab/app/run"]


def _bare_run(b: _Bench, argv: list[str]) -> float:
    started = time.perf_counter()
    b.engine.podman(*argv)
    return time.perf_counter() - started


# --- the benchmark ----------------------------------------------------------------------


def missing_tools() -> list[str]:
    """The programs this benchmark needs and does not find."""
    return [tool for tool in ("podman", "runc", "busybox") if shutil.which(tool) is None]


def bench_actions(
    work: Path, settings: ActionSettings, log: Callable[[str], None]
) -> tuple[list[Figure], dict[str, Any]]:
    """Runs every part of the benchmark on a private engine; figures and raw details."""
    work.mkdir(parents=True, exist_ok=True)
    database = work / "actions.db"
    for stale in [*work.glob("actions.db*"), *work.glob("realistic.db*")]:
        stale.unlink()
    with podman_engine() as engine:
        image = engine.image("bench-noop", RUN_SCRIPT)
        b = _Bench(engine, image, _bundle(image), work, log)
        figures = _single(b, database, settings)
        figures += bench_realistic(
            engine,
            work,
            lambda label: _start_server(b, work / "realistic.db", 1, label),
            settings.samples,
            log,
            b.details,
        )
        figures += _batches(b, database, settings)
    return figures, b.details


def _single(b: _Bench, database: Path, settings: ActionSettings) -> list[Figure]:
    server = _start_server(b, database, DEFAULT_MAX_CONCURRENT_RUNS, "single")
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = porter_bundle_pb2_grpc.PorterBundleStub(channel)
            _create(stub, b, ["single", *(f"batch-{n:02d}" for n in range(BATCH))])
            inst = b.installations["single"]
            argv = _bare_argv(b, inst, _bare_files(b, inst))
            # Warm-up: the server connects to the engine on its first action.
            wait_removed(b.engine, _one_action(stub, "single")[1].id)
            _bare_run(b, argv)
            real: list[float] = []
            bare: list[float] = []
            stamped: list[dict[str, float]] = []
            for n in range(settings.samples):
                # A/B, then B/A: neither side always follows the other.
                for side in ("real", "bare") if n % 2 == 0 else ("bare", "real"):
                    if side == "real":
                        seconds, run = _one_action(stub, "single")
                        wait_removed(b.engine, run.id)
                        real.append(seconds)
                        created, begun = _seconds(run.create_time), _seconds(run.start_time)
                        ended = _seconds(run.complete_time)
                        stamped.append({"queued": begun - created, "running": ended - begun})
                    else:
                        bare.append(_bare_run(b, argv))
                b.log(
                    f"  action {n + 1:2d}: porter-bundle {real[-1] * 1000:6.0f} ms   "
                    f"podman run {bare[-1] * 1000:6.0f} ms"
                )
    finally:
        server.stop()
    b.details["action_single"] = {
        "porter_bundle_seconds": real,
        "bare_podman_run_seconds": bare,
        "server_stamps_seconds": stamped,
        "poll_seconds": POLL_SECONDS,
        "bare_command": ["podman", *argv],
    }
    return action_figures(
        "Action: ExecuteAction to SUCCEEDED / bare podman run (median)",
        TARGET_ACTION_RATIO,
        f"script exits at once; {settings.samples} each, alternating; "
        f"polled every {POLL_SECONDS * 1000:g} ms",
        real,
        bare,
        stamped,
    )


def _batches(b: _Bench, database: Path, settings: ActionSettings) -> list[Figure]:
    names = [f"batch-{n:02d}" for n in range(BATCH)]
    figures: list[Figure] = []
    sequential: float | None = None
    for max_runs in settings.max_concurrent_runs:
        server = _start_server(b, database, max_runs, f"batch-{max_runs}")
        try:
            with grpc.insecure_channel(server.target) as channel:
                stub = porter_bundle_pb2_grpc.PorterBundleStub(channel)
                _one_action(stub, names[0])  # the engine connection, as above
                result = _batch(stub, names)
        finally:
            server.stop()
        b.log(
            f"  {BATCH} at once, --max-concurrent-runs {max_runs}: {result['succeeded']} "
            f"succeeded in {result['seconds']:.2f} s"
        )
        if sequential is None:
            sequential = _sequential_bare(b, names)
            b.log(f"  {BATCH} sequential podman run --rm: {sequential:.2f} s")
        b.details[f"action_batch_{max_runs}"] = result
        default = " (default)" if max_runs == DEFAULT_MAX_CONCURRENT_RUNS else ""
        figures += [
            Figure(
                f"{BATCH} actions at once, max {max_runs} runs{default}: succeeded",
                result["succeeded"],
                "runs",
                BATCH,
                "min",
                "; ".join(result["failed"])[:200],
            ),
            Figure(
                f"  all {BATCH} ended / {BATCH} sequential podman run",
                result["seconds"] / sequential,
                "x",
                note="context",
            ),
            Figure(f"  porter-bundle, {BATCH} at once", result["seconds"], "s"),
            Figure(
                "  one run, started to completed (median)",
                statistics.median(result["run_seconds"]),
                "s",
                note=f"context: slowest {max(result['run_seconds']):.2f} s",
            ),
        ]
    assert sequential is not None
    b.details["action_batch_sequential_bare_seconds"] = sequential
    figures.append(Figure(f"  {BATCH} sequential podman run --rm", sequential, "s"))
    return figures


def _sequential_bare(b: _Bench, names: list[str]) -> float:
    insts = [b.installations[name] for name in names]
    argvs = [_bare_argv(b, inst, _bare_files(b, inst)) for inst in insts]
    started = time.perf_counter()
    for argv in argvs:
        b.engine.podman(*argv)
    return time.perf_counter() - started
