"""A private Podman engine and busybox invocation images, for the tests and the benchmarks.

The test fixtures ``podman_service`` and ``test_image`` (tests/conftest.py) build on this
module, and so does ``make bench`` (bench/actions.py, bench/streams.py). Each setting below is
needed on these machines (the reason is written beside it): its own containers.conf and
storage.conf in a temp dir, ``podman system service`` on a socket there, and the same two files
in ``CONTAINERS_CONF`` / ``CONTAINERS_STORAGE_CONF`` for the podman commands that must see the
same store (``podman import``, a bare ``podman run``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import wait_until

START_SECONDS = 60.0

CONTAINERS_CONF = """\
[containers]
# Else: "error setting rlimit ... operation not permitted".
default_ulimits = []

[engine]
# crun fails here: "cgroups in hybrid mode not supported".
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
# Podman's own scratch state (default /run/libpod) in the temp dir too, so concurrent
# sessions and the system's podman never share it.
tmp_dir = "{root}/tmp"
"""

STORAGE_CONF = """\
[storage]
driver = "{driver}"
runroot = "{root}/runroot"
graphroot = "{root}/graphroot"
"""


@dataclass(frozen=True)
class Engine:
    """A running ``podman system service`` and the env that reaches its store."""

    url: str
    """``unix://`` address of its Docker-compatible API."""
    env: dict[str, str]
    root: Path
    service: PodmanService
    """Its ``podman system service`` process (a test may kill and start it again)."""
    _built: set[str] = field(default_factory=set)

    def podman(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Runs a podman command on the engine's store; raises with its stderr on failure."""
        done = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done

    def image(
        self, name: str, run_script: str, extra_files: Mapping[str, str] | None = None
    ) -> str:
        """A busybox image whose ``/cnab/app/run`` is ``run_script``: ``localhost/name:hash``.

        ``extra_files`` maps absolute paths to text (mode 644, or 755 if it starts with
        ``#!``). ``PATH=/bin`` holds busybox and its applets. The same arguments give the
        same reference, built once.
        """
        files = {"/cnab/app/run": run_script, **(extra_files or {})}
        digest = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()[:12]
        ref = f"localhost/{name}:{digest}"
        if ref in self._built:
            return ref
        busybox = shutil.which("busybox")
        if busybox is None:
            raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
        rootfs = self.root / "images" / f"{name}-{digest}"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
        for applet in applets.stdout.split():
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        for directory in ("tmp", "etc", "cnab/app"):
            (rootfs / directory).mkdir(parents=True, exist_ok=True)
        (rootfs / "tmp").chmod(0o1777)
        for path, text in files.items():
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o755 if text.startswith("#!") or path == "/cnab/app/run" else 0o644)

        def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        archive = rootfs.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            for child in sorted(rootfs.iterdir()):
                tar.add(child, arcname=child.name, filter=as_root)
        self.podman("import", "--change", "ENV PATH=/bin", str(archive), ref)
        self._built.add(ref)
        return ref


def _ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            answer = sock.recv(4096)
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]


def write_store_config(root: Path | str, driver: str = "vfs") -> dict[str, str]:
    """Writes containers.conf and storage.conf for a podman store in ``root``; the env that
    points podman at it. ``make image`` keeps its images in such a store (build/podman) with
    the ``overlay`` driver: vfs copies the whole root file system for every layer and every
    intermediate container, which makes an image build take minutes instead of seconds."""
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    (root / "containers.conf").write_text(CONTAINERS_CONF.format(root=root))
    (root / "storage.conf").write_text(STORAGE_CONF.format(root=root, driver=driver))
    return {
        **os.environ,
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
    }


class PodmanService:
    """The ``podman system service`` process of a store, on its socket: started, stopped, or
    SIGKILLed and started again on the same socket and storage (its containers go on under
    conmon meanwhile, as they do when the real service dies)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.sock = root / "podman.sock"
        self.log_path = root / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts the service and waits until it answers /_ping."""
        with self.log_path.open("ab") as service_log:
            process = self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", f"unix://{self.sock}"],
                env=self.env,
                stdout=service_log,
                stderr=subprocess.STDOUT,
            )

        def started() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"podman system service failed: {self._log_tail()}")
            return _ping(self.sock)

        try:
            wait_until(started, "podman system service to answer", timeout=START_SECONDS)
        except AssertionError as err:  # the log says why, and goes with the temp dir
            raise RuntimeError(f"{err}: {self._log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL, as an engine that dies; its socket file stays behind."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=15)
            self.process = None

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 15 s)."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited 15 s later; waits for it."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@contextlib.contextmanager
def podman_engine(root: Path | None = None) -> Iterator[Engine]:
    """Starts a private Podman service in ``root`` (a new temp dir by default); removes
    everything afterwards. ``Engine.service`` stops and starts it again."""
    if shutil.which("podman") is None:
        raise RuntimeError("podman is not installed (apt-get install podman runc busybox-static)")
    root = root or Path(tempfile.mkdtemp(prefix="porter-bundle-podman-"))
    env = write_store_config(root)
    service = PodmanService(root, env)
    engine = Engine(f"unix://{service.sock}", env, root, service)
    try:
        service.start()
        yield engine
    finally:
        with contextlib.suppress(Exception):
            engine.podman("rm", "--all", "--force")
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


class WedgedEngine:
    """A unix socket that accepts connections and reads requests but never answers them,
    like an engine whose OCI runtime hangs. With ``ping=True`` it answers ``/_ping`` as
    Podman does (so a client connects) and nothing else."""

    PING_ANSWER = (
        b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nLibpod-Api-Version: 4.3.1\r\n"
        b"Content-Length: 2\r\n\r\nOK"
    )

    def __init__(self, path: Path, *, ping: bool = False) -> None:
        self.path = path
        self.url = f"unix://{path}"
        self.requests: list[str] = []
        self.answers_ping = ping
        """Whether it answers /_ping now (a test may change it)."""
        self._connections: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, name="wedged-engine", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0].decode(errors="replace")
                self.requests.append(line)
                if self.answers_ping and " /_ping " in line:
                    conn.sendall(self.PING_ANSWER)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> WedgedEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
