"""Subprocesses of the benchmark: the two servers, the load generator, memory readings.

Each server is its own process (so its memory can be read from /proc and it competes
for the CPU like a deployment would), started on port 0; the port is read from the
line it prints when ready.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
_PORT_LINE = re.compile(r"listening on port (\d+)")
START_TIMEOUT = 120.0


def child_env() -> dict[str, str]:
    """The environment of child processes: this repo's sources importable first."""
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "src"), str(REPO / "gen")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


@dataclass
class ServerProcess:
    """A started server subprocess and the port it listens on."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    log: Path
    started_seconds: float

    @property
    def target(self) -> str:
        """host:port to dial."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Its process ID."""
        return self.proc.pid

    def memory(self) -> dict[str, int]:
        """Current and peak resident memory in KiB."""
        return read_status(self.proc.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _drain(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def start_server(name: str, argv: list[str], log: Path) -> ServerProcess:
    """Starts ``argv`` and waits for its "listening on port N" line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"{name} did not start in {START_TIMEOUT:.0f}s; see {log}") from None
        if line is None:
            raise RuntimeError(f"{name} exited with {proc.wait()} before listening; see {log}")
        match = _PORT_LINE.search(line)
        if match:
            return ServerProcess(
                name, proc, int(match.group(1)), log, time.perf_counter() - started
            )


def start_porter_bundle(
    database_url: str, log: Path, *extra: str, log_level: str = "WARNING"
) -> ServerProcess:
    """``porter-bundle serve`` on port 0 over ``database_url``; ``extra`` are more options."""
    argv = [sys.executable, "-m", "porter_bundle", "serve", "--address", "127.0.0.1:0"]
    argv += ["--database", database_url, "--log-level", log_level, *extra]
    return start_server("porter-bundle", argv, log)


def start_bare(method: str, response: Path, log: Path) -> ServerProcess:
    """The bare grpcio server answering ``method`` with the bytes in ``response``."""
    argv = [sys.executable, "-m", "bench.bare_server", "--method", method]
    argv += ["--response", str(response)]
    return start_server("bare grpcio", argv, log)


def run_loadgen(args: list[str], timeout: float = 600.0) -> dict[str, Any]:
    """Runs ``python -m bench.loadgen ARGS`` and returns its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@dataclass
class MemorySampler:
    """Samples a process's VmRSS in a background thread; keeps the highest reading."""

    pid: int
    interval: float = 0.1
    peak_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, read_status(self.pid)["VmRSS"])
            except (FileNotFoundError, KeyError):
                return
            self._stop.wait(self.interval)
