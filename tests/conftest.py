"""Shared fixtures: a real server on port 0 over a real SQLite file, and real stubs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.api.server import RunningServer, start_server
from porter_bundle.config import Settings, sqlite_url
from porter_bundle.service import Services
from porter_bundle.store import Store


@dataclass
class ServerHandle:
    """A server running in its own event loop thread."""

    port: int
    store: Store
    services: Services
    loop: asyncio.AbstractEventLoop
    running: RunningServer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float | None = 0) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(grace), self.loop).result(timeout=30)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "porter-bundle.db"


# Set to a PostgreSQL server URL (e.g. postgresql+psycopg://postgres@/postgres?host=/var/run/postgresql)
# to run every store-backed test against a fresh PostgreSQL database instead of a SQLite file.
POSTGRES_ENV = "PORTER_BUNDLE_TEST_POSTGRES"


@pytest.fixture
def database_url(db_path: Path) -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        yield sqlite_url(db_path)
        return
    name = f"pbtest_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def services(store: Store) -> Services:
    return Services.create(store)


@pytest.fixture
def server(store: Store, services: Services) -> Iterator[ServerHandle]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server-loop", daemon=True)
    thread.start()
    started: Future[RunningServer] = asyncio.run_coroutine_threadsafe(
        start_server(Settings(address="127.0.0.1:0"), services), loop
    )
    running = started.result(timeout=30)
    handle = ServerHandle(running.port, store, services, loop, running)
    yield handle
    try:
        handle.stop(0)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def channel(server: ServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> porter_bundle_pb2_grpc.PorterBundleStub:
    return porter_bundle_pb2_grpc.PorterBundleStub(channel)


# ---------------------------------------------------------------------------------------------
# A real container engine and a real OCI registry, private to the test session.
#
# Podman serves the Docker Engine API from its own socket, config and store in a temp dir
# (settings from docs/toolchain.md: each one is needed on these machines), so tests never
# touch the system's containers or images. `make test` installs podman, runc, busybox-static
# and docker-registry (APT_PACKAGES).

ENGINE_START_SECONDS = 60.0

PODMAN_CONTAINERS_CONF = """\
[containers]
# Else: "error setting rlimit ... operation not permitted".
default_ulimits = []

[engine]
# crun fails here: "cgroups in hybrid mode not supported".
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
# Podman's own scratch state (default /run/libpod) in the temp dir too, so concurrent test
# sessions and the system's podman never share it.
tmp_dir = "{root}/tmp"
"""

PODMAN_STORAGE_CONF = """\
[storage]
driver = "vfs"
runroot = "{root}/runroot"
graphroot = "{root}/graphroot"
"""


@dataclass(frozen=True)
class PodmanService:
    """A running ``podman system service``: its API URL, and the env that reaches its store."""

    url: str
    """``unix://`` address of the Docker-compatible API."""
    env: dict[str, str]
    """Environment for podman commands that must see the same store (``podman import`` ...)."""

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs a podman command against the service's store; raises with its stderr on failure."""
        done = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
        return done


def _unix_ping(path: Path) -> bool:
    """True when the Docker API on that socket answers GET /_ping."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            answer = sock.recv(4096)
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]


@pytest.fixture(scope="session")
def podman_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make test` installs it with APT_PACKAGES)")
    root = tmp_path_factory.mktemp("podman")
    (root / "containers.conf").write_text(PODMAN_CONTAINERS_CONF.format(root=root))
    (root / "storage.conf").write_text(PODMAN_STORAGE_CONF.format(root=root))
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
    }
    sock = root / "podman.sock"
    log_path = root / "service.log"
    with log_path.open("wb") as service_log:
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{sock}"],
            env=env,
            stdout=service_log,
            stderr=subprocess.STDOUT,
        )
    service = PodmanService(f"unix://{sock}", env)
    try:
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while not _unix_ping(sock):
            if process.poll() is not None:
                pytest.fail(f"podman system service exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"podman system service did not answer: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield service
    finally:
        # Containers first (vfs keeps each one's rootfs as a full copy), then the service.
        with contextlib.suppress(Exception):
            service.podman("rm", "--all", "--force")
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_host(podman_service: PodmanService) -> str:
    """The ``unix://`` URL of the session's Podman Docker API."""
    return podman_service.url


TestImage = Callable[..., str]
"""``test_image(name, run_script, extra_files={})`` -> image reference (see the fixture)."""


@pytest.fixture(scope="session")
def test_image(
    podman_service: PodmanService, tmp_path_factory: pytest.TempPathFactory
) -> TestImage:
    """Builds busybox images into the session's Podman store: ``localhost/<name>:<hash>``.

    ``run_script`` becomes ``/cnab/app/run`` (mode 755; start it with ``#!/bin/sh``);
    ``extra_files`` maps absolute paths to text (mode 644, or 755 if it starts with ``#!``).
    ``PATH=/bin`` holds busybox and its applets (sh, cat, echo, sleep, env, ls, mkdir ...).
    The same arguments give the same reference, built once.
    """
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is not installed (`make test` installs busybox-static)")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    workdir = tmp_path_factory.mktemp("images")
    built: dict[str, str] = {}

    def build(name: str, run_script: str, extra_files: Mapping[str, str] | None = None) -> str:
        files = {"/cnab/app/run": run_script, **(extra_files or {})}
        digest = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()[:12]
        ref = f"localhost/{name}:{digest}"
        if ref in built:
            return ref
        rootfs = workdir / f"{name}-{digest}"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in applets:
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

        archive = workdir / f"{name}-{digest}.tar"
        with tarfile.open(archive, "w") as tar:
            for child in sorted(rootfs.iterdir()):
                tar.add(child, arcname=child.name, filter=as_root)
        podman_service.podman("import", "--change", "ENV PATH=/bin", str(archive), ref)
        built[ref] = ref
        return ref

    return build


@contextlib.contextmanager
def _registry(root: Path, extra_config: str = "") -> Iterator[str]:
    """Serves a CNCF distribution registry over plain HTTP on a free port: ``127.0.0.1:<port>``."""
    program = shutil.which("docker-registry")
    if program is None:
        pytest.skip("docker-registry is not installed (`make test` installs it with APT_PACKAGES)")
    for _ in range(3):  # a free port found now may be taken before the registry binds it
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '127.0.0.1:{port}'}}\n" + extra_config
        )
        with (root / "registry.log").open("wb") as registry_log:
            process = subprocess.Popen(
                [program, "serve", str(config)], stdout=registry_log, stderr=subprocess.STDOUT
            )
        up = False
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while not up and process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                up = True
            if not up:
                time.sleep(0.05)
        try:
            if up:
                yield f"127.0.0.1:{port}"
                return
        finally:
            process.terminate()
            process.wait(timeout=15)
    pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry over plain HTTP, open to all: ``127.0.0.1:<port>``."""
    with _registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@dataclass(frozen=True)
class RegistryLogin:
    """A registry that wants a user and password (over plain HTTP)."""

    host: str
    user: str
    password: str


@pytest.fixture(scope="session")
def oci_registry_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryLogin]:
    """A registry over plain HTTP that wants ``RegistryLogin.user`` / ``.password`` (htpasswd)."""
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # crypt: bcrypt without a new dependency
        try:
            import crypt
        except ImportError:
            pytest.skip("no crypt module to make a bcrypt htpasswd entry")
    root = tmp_path_factory.mktemp("registry-auth")
    login = RegistryLogin("", "alice", secrets.token_urlsafe(12))
    hashed = crypt.crypt(login.password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("this libc's crypt() makes no bcrypt hashes (the registry needs them)")
    (root / "htpasswd").write_text(f"{login.user}:{hashed}\n")
    auth = f"auth: {{htpasswd: {{realm: test, path: {root / 'htpasswd'}}}}}\n"
    with _registry(root, auth) as host:
        yield RegistryLogin(host, login.user, login.password)
