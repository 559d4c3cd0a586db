"""The ``streams`` benchmark: 1,000 live streams on one server, and log delivery latency.

One porter-bundle server (``serve --container-host`` a private Podman, a fresh SQLite file)
runs an invocation image that waits for SIGUSR1, then writes ``tick <n> <µs since the
epoch>`` lines (the stamp read with busybox ``adjtimex`` just before the line is written).

* Idle: the server's CPU time, resident memory and thread count are read with no stream,
  then with 500 WatchInstallationRuns and 500 StreamRunLogs(follow) calls open (from
  client processes, ``bench/streams_client.py``, grpc.aio, several channels each).
* Delivery: SIGUSR1 starts the ticks. Each follower records, per line, the delay from the
  container's stamp to its arrival; so do one lone follower in its own process (the server's
  delay with the load on, without the loaded clients' own queueing) and a bare
  ``podman logs -f`` of the same container, read by this process. The server's CPU time over
  the delivery is divided by the messages it delivered.
* Checks: every follower received exactly the stored log (SHA-256), every watcher saw the
  run's RUNNING then SUCCEEDED once, and the thread count did not grow with the streams.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc

from bench.procs import REPO, ServerProcess, child_env, cpu_seconds, start_porter_bundle
from bench.report import Figure
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
    Run,
)
from porter_bundle.executor import container_name
from tests.engine import Engine, podman_engine

NAMESPACE = "bench"
INSTALLATION = "ticker"
REFERENCE = "localhost:5000/bench-ticker:v1"
FINAL = (RUN_STATE_SUCCEEDED, RUN_STATE_FAILED, RUN_STATE_CANCELED)
DEADLINE_SECONDS = 180.0

# The stamp: busybox adjtimex prints the kernel's time.tv_sec and time.tv_usec (nanoseconds
# when the clock runs in nano mode, which the awk program folds back to microseconds).
RUN_SCRIPT = r"""#!/bin/sh
go=""
trap 'go=1' USR1
echo "waiting for USR1"
while [ -z "$go" ]; do sleep 0.05; done
i=0
while [ $i -lt "${TICKS:-100}" ]; do
  echo "tick $i $(adjtimex | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{if (u > 999999) u = int(u / 1000); printf "%d%06d", s, u}')"
  i=$((i+1))
  sleep 0.05
done
echo "done"
"""


@dataclass(frozen=True)
class StreamSettings:
    """How many streams, client processes and lines."""

    streams: int = 1000
    """Half watchers (WatchInstallationRuns), half followers (StreamRunLogs, follow)."""
    processes: int = 4
    """Client processes sharing the streams."""
    channels: int = 4
    """Channels per client process."""
    lines: int = 100
    """Log lines the container writes, one every 50 ms or so."""
    idle_seconds: float = 5.0
    """How long CPU time is counted with no stream, and with every stream idle."""


@dataclass
class _Proc:
    """A client process and what it printed."""

    proc: subprocess.Popen[str]
    ready: dict[str, Any] = field(default_factory=dict)

    def send_stop(self) -> dict[str, Any]:
        out, err = self.proc.communicate("stop\n", timeout=DEADLINE_SECONDS)
        if self.proc.returncode != 0:
            raise RuntimeError(f"stream client failed: {err[-2000:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def _proc_stat(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, VmRSS KiB, threads) of a process."""
    cpu = cpu_seconds(pid)
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return cpu, rss, threads


def _idle_reading(server: ServerProcess, seconds: float) -> dict[str, float]:
    """CPU share (of one core) over ``seconds``, then RSS and threads, of an idle server."""
    cpu0, _, _ = _proc_stat(server.pid)
    time.sleep(seconds)
    cpu1, rss, threads = _proc_stat(server.pid)
    return {"cpu_share": (cpu1 - cpu0) / seconds, "rss_kib": rss, "threads": threads}


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _wait_for(check: Callable[[], bool], what: str, timeout: float = DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class _Bench:
    def __init__(self, engine: Engine, server: ServerProcess, log: Callable[[str], None]) -> None:
        self.engine = engine
        self.server = server
        self.log = log
        self.channel = grpc.insecure_channel(server.target)
        self.stub = porter_bundle_pb2_grpc.PorterBundleStub(self.channel)

    def setup(self, image: str) -> None:
        bundle = {
            "schemaVersion": "v1.0.0",
            "name": "bench-ticker",
            "version": "1.0.0",
            "invocationImages": [{"imageType": "docker", "image": image}],
            "definitions": {"ticks": {"type": "integer", "minimum": 0, "default": 100}},
            "parameters": {"ticks": {"definition": "ticks", "destination": {"env": "TICKS"}}},
            "actions": {"tick": {"stateless": True, "modifies": False}},
        }
        self.stub.CreateBundle(
            pb.CreateBundleRequest(reference=REFERENCE, bundle_json=json.dumps(bundle))
        )
        inst = Installation(
            namespace=NAMESPACE,
            name=INSTALLATION,
            bundle=BundleReference(repository=REFERENCE.rsplit(":", 1)[0], tag="v1"),
        )
        self.stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))

    def start_ticker(self, ticks: int) -> Run:
        """Starts a run and waits until its container waits for SIGUSR1."""
        request = pb.ExecuteActionRequest(namespace=NAMESPACE, name=INSTALLATION, action="tick")
        request.parameters.update({"ticks": ticks})
        run = self.stub.ExecuteAction(request).run
        _wait_for(lambda: "waiting for USR1" in self.logs(run.id), "the ticker's container")
        return run

    def logs(self, run_id: str) -> str:
        return self.stub.GetInstallationRunLogs(
            pb.GetInstallationRunLogsRequest(namespace=NAMESPACE, name=INSTALLATION, run_id=run_id)
        ).logs

    def go(self, run: Run) -> None:
        self.engine.podman("kill", "--signal", "USR1", container_name(run.id))

    def wait_final(self, run: Run) -> Run:
        final: list[Run] = []

        def done() -> bool:
            got = self.stub.GetInstallationRun(
                pb.GetInstallationRunRequest(namespace=NAMESPACE, name=INSTALLATION, run_id=run.id)
            ).run
            if got.state in FINAL:
                final.append(got)
            return bool(final)

        _wait_for(done, f"run {run.id} to end")
        return final[0]

    def clients(self, run: Run, settings: StreamSettings) -> list[_Proc]:
        """Starts the loaded client processes and the lone follower; waits until all are ready."""
        procs: list[_Proc] = []
        half = settings.streams // 2
        for n in range(settings.processes):
            watchers = half // settings.processes + (1 if n < half % settings.processes else 0)
            followers = (settings.streams - half) // settings.processes + (
                1 if n < (settings.streams - half) % settings.processes else 0
            )
            procs.append(self._client(run, watchers, followers, settings.channels))
        procs.append(self._client(run, 0, 1, 1))  # the lone follower
        for p in procs:
            assert p.proc.stdout is not None
            line = p.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"stream client exited: {p.proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            p.ready = json.loads(line)
        return procs

    def _client(self, run: Run, watchers: int, followers: int, channels: int) -> _Proc:
        argv = [sys.executable, "-m", "bench.streams_client", "--target", self.server.target]
        argv += ["--namespace", NAMESPACE, "--installation", INSTALLATION, "--run-id", run.id]
        argv += ["--watchers", str(watchers), "--followers", str(followers)]
        argv += ["--channels", str(channels)]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        return _Proc(proc)


class _BareFollower:
    """``podman logs -f`` of the container, each line stamped as it is read."""

    def __init__(self, engine: Engine, run: Run) -> None:
        self.proc = subprocess.Popen(
            ["podman", "logs", "-f", container_name(run.id)],
            env=engine.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.latencies_ms: list[float] = []
        self.attached = threading.Event()
        assert self.proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            now_us = time.time_ns() // 1000
            parts = line.split()
            if line.startswith(b"waiting for USR1"):
                self.attached.set()
            elif len(parts) == 3 and parts[0] == b"tick":
                self.latencies_ms.append((now_us - int(parts[2])) / 1000)

    def finish(self) -> None:
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=30)


def bench_streams(
    work: Path, settings: StreamSettings, log: Callable[[str], None]
) -> tuple[list[Figure], dict[str, Any]]:
    """Runs the benchmark on a private engine; figures and raw details."""
    work.mkdir(parents=True, exist_ok=True)
    database = work / "streams.db"
    for stale in work.glob("streams.db*"):
        stale.unlink()
    with podman_engine() as engine:
        image = engine.image("bench-ticker", RUN_SCRIPT)
        server = start_porter_bundle(
            f"sqlite:///{database}",
            work / "porter-bundle-streams.log",
            "--container-host",
            engine.url,
        )
        try:
            return _measure(_Bench(engine, server, log), image, settings)
        finally:
            server.stop()


def _measure(
    b: _Bench, image: str, settings: StreamSettings
) -> tuple[list[Figure], dict[str, Any]]:
    b.setup(image)
    # Warm-up: the first run connects to the engine and starts the server's worker threads.
    warm = b.start_ticker(3)
    b.go(warm)
    b.wait_final(warm)

    # The run's container waits for SIGUSR1 from here on: its own threads (the executor's log
    # and exit watchers) are there before and after the streams open.
    run = b.start_ticker(settings.lines)
    b.log(f"  idle server, no stream ({settings.idle_seconds:g} s)")
    before = _idle_reading(b.server, settings.idle_seconds)
    b.log(f"  opening {settings.streams:,} streams from {settings.processes} processes (+1 lone)")
    opened = time.perf_counter()
    procs = b.clients(run, settings)
    open_seconds = time.perf_counter() - opened
    ready = sum(int(p.ready["ready"]) for p in procs)
    b.log(f"  {ready:,} streams ready in {open_seconds:.1f}s; idle ({settings.idle_seconds:g} s)")
    idle = _idle_reading(b.server, settings.idle_seconds)

    bare = _BareFollower(b.engine, run)
    if not bare.attached.wait(60):
        raise RuntimeError("podman logs -f did not attach")
    cpu0, _, _ = _proc_stat(b.server.pid)
    peak_threads = idle["threads"]
    b.go(run)
    b.log(f"  delivering {settings.lines} lines to every follower")
    watcher = threading.Event()

    def sample_threads() -> None:
        nonlocal peak_threads
        while not watcher.is_set():
            peak_threads = max(peak_threads, _proc_stat(b.server.pid)[2])
            watcher.wait(0.1)

    sampler = threading.Thread(target=sample_threads, daemon=True)
    sampler.start()
    final = b.wait_final(run)
    cpu1, rss_delivery, _ = _proc_stat(b.server.pid)
    watcher.set()
    sampler.join()
    bare.finish()
    results = [p.send_stop() for p in procs]
    if final.state != RUN_STATE_SUCCEEDED:
        raise RuntimeError(f"the ticker run ended {final.state}: {final.message}")

    stored = b.logs(run.id).encode()
    expected = hashlib.sha256(stored).hexdigest()
    loaded, lone = results[:-1], results[-1]
    followers = settings.streams - settings.streams // 2
    watchers = settings.streams // 2
    complete = sum(r["logs"].get(expected, 0) for r in loaded)
    saw = sum(r["watch_states"].get("RUNNING SUCCEEDED", 0) for r in loaded)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    loaded_ms = [x for r in loaded for x in r["latencies_ms"]]
    lone_ms = list(lone["latencies_ms"])
    bare_ms = bare.latencies_ms
    delivered = settings.lines * (followers + 1)
    per_stream_kib = (idle["rss_kib"] - before["rss_kib"]) / settings.streams
    details = {
        "streams": settings.streams,
        "ready": ready,
        "open_seconds": open_seconds,
        "before": before,
        "idle_with_streams": idle,
        "delivery": {
            "cpu_seconds": cpu1 - cpu0,
            "rss_kib": rss_delivery,
            "peak_threads": peak_threads,
            "lines": settings.lines,
        },
        "errors": errors,
        "watch_states": [r["watch_states"] for r in loaded],
        "latency_ms": {
            name: {"p50": _percentile(v, 0.5), "p99": _percentile(v, 0.99), "n": len(v)}
            for name, v in (("followers", loaded_ms), ("lone", lone_ms), ("bare", bare_ms))
        },
    }
    b.log(f"  errors: {errors or 'none'}")
    n = settings.streams
    return [
        Figure(
            "Live streams open on one server",
            ready - 1,
            "streams",
            n,
            "min",
            "half watch, half follow",
        ),
        Figure(
            f"Server threads added by {n:,} streams",
            idle["threads"] - before["threads"],
            "threads",
            0,
            "max",
            f"{before['threads']} before; peak {peak_threads} while delivering",
        ),
        Figure(
            f"Followers that got the whole log exactly ({followers})",
            complete,
            "",
            followers,
            "min",
        ),
        Figure(f"Watchers that saw RUNNING, SUCCEEDED once ({watchers})", saw, "", watchers, "min"),
        Figure(
            "Server memory added per stream",
            per_stream_kib,
            "KiB",
            note="context: idle RSS delta / streams",
        ),
        Figure(
            f"Server CPU with {n:,} idle streams",
            idle["cpu_share"] * 100,
            "% core",
            note=f"context: {before['cpu_share'] * 100:.2f}% with none",
        ),
        Figure(
            "Server CPU added per idle stream",
            (idle["cpu_share"] - before["cpu_share"]) / n * 1e6,
            "µs/s",
            note="context: re-checks every 5 s, heartbeats every 15 s",
        ),
        Figure(
            "Server CPU per delivered log message",
            (cpu1 - cpu0) / delivered * 1e6,
            "µs",
            note=f"context: {delivered:,} messages, plus the run itself",
        ),
        Figure(
            f"Log latency p50, {followers} followers (loaded clients)",
            _percentile(loaded_ms, 0.5),
            "ms",
        ),
        Figure(
            f"Log latency p99, {followers} followers (loaded clients)",
            _percentile(loaded_ms, 0.99),
            "ms",
        ),
        Figure(
            "Log latency p50, lone follower",
            _percentile(lone_ms, 0.5),
            "ms",
            note="same run, own process",
        ),
        Figure("Log latency p99, lone follower", _percentile(lone_ms, 0.99), "ms"),
        Figure(
            "Log latency p50, bare podman logs -f",
            _percentile(bare_ms, 0.5),
            "ms",
            note="same container",
        ),
        Figure("Log latency p99, bare podman logs -f", _percentile(bare_ms, 0.99), "ms"),
        Figure(
            "Log latency p50: lone follower / bare podman logs -f",
            _percentile(lone_ms, 0.5) / _percentile(bare_ms, 0.5),
            "x",
            note="context",
        ),
    ], details


__all__ = ["StreamSettings", "bench_streams"]
