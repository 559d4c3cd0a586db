"""Shared fixtures: a real server on port 0 over a real SQLite file, and real stubs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.api.server import RunningServer
from porter_bundle.config import Settings, sqlite_url
from porter_bundle.service import Services
from porter_bundle.store import Database, Keyring
from tests.engine import Engine, podman_engine
from tests.helpers import serving_in_thread, wait_until
from tests.image.images import Images, build_images
from tests.registry_proxy import RegistryProxy


@dataclass
class ServerHandle:
    """A server running in its own event loop thread."""

    port: int
    store: Database
    services: Services
    loop: asyncio.AbstractEventLoop
    running: RunningServer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float | None = 0) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(grace), self.loop).result(timeout=30)


# Markers from the fixtures a test uses, however indirectly (declared in pyproject.toml).
MARKER_OF_FIXTURE = {
    "podman_service": "podman",
    "images": "podman",
    "oci_registry": "registry",
    "oci_registry_with_auth": "registry",
    "database_url": "postgres",
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test ``podman``, ``registry`` or ``postgres`` when it needs that; the Podman
    tests share one xdist group, so one worker starts the engine and builds the images."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for name, marker in MARKER_OF_FIXTURE.items():
            if name in used:
                item.add_marker(marker)
        if "podman_service" in used or "images" in used:
            item.add_marker(pytest.mark.xdist_group("podman"))


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
def keyring() -> Keyring:
    """The encryption keys of the test store (one random key)."""
    return Keyring.generate()


@pytest.fixture
def store(database_url: str, keyring: Keyring) -> Iterator[Database]:
    s = Database(database_url, keyring=keyring)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def services(store: Database) -> Services:
    return Services.create(store)


@pytest.fixture
def server_settings() -> Settings:
    """The test server's settings; a module may override this fixture (e.g. stream timing)."""
    return Settings(address="127.0.0.1:0")


@pytest.fixture
def server(
    store: Database, services: Services, server_settings: Settings
) -> Iterator[ServerHandle]:
    with serving_in_thread(server_settings, services) as (running, loop):
        yield ServerHandle(running.port, store, services, loop, running)


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
# (tests/engine.py: each setting is needed on these machines), so tests never touch the
# system's containers or images. `make test` installs podman, runc, busybox-static
# and docker-registry (APT_PACKAGES).

ENGINE_START_SECONDS = 60.0

# The engine and images come from tests/engine.py, which the benchmarks use too.
PodmanService = Engine


@pytest.fixture(scope="session")
def podman_service() -> Iterator[Engine]:
    """A private ``podman system service`` for the session (``.url``, ``.env``, ``.podman()``)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make test` installs it with APT_PACKAGES)")
    # In a short temp dir of its own, not the session's (longer under pytest-xdist): conmon's
    # sockets in it must stay under the 108-byte limit of a Unix socket path, else Podman takes
    # tens of seconds to see a container exit.
    with podman_engine() as engine:
        yield engine


@pytest.fixture(scope="session")
def podman_host(podman_service: Engine) -> str:
    """The ``unix://`` URL of the session's Podman Docker API."""
    return podman_service.url


TestImage = Callable[..., str]
"""``test_image(name, run_script, extra_files={})`` -> image reference (see Engine.image)."""


@pytest.fixture(scope="session")
def test_image(podman_service: Engine) -> TestImage:
    """Builds busybox images into the session's Podman store (see tests.engine.Engine.image)."""
    if shutil.which("busybox") is None:
        pytest.fail("busybox is not installed (`make test` installs busybox-static)")
    return podman_service.image


def _listening(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


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
        with contextlib.suppress(AssertionError):  # not up in time: the next port, or fail
            wait_until(
                lambda process=process, port=port: process.poll() is not None or _listening(port),
                "docker-registry to listen",
                timeout=ENGINE_START_SECONDS,
            )
        try:
            if process.poll() is None and _listening(port):
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


# ---------------------------------------------------------------------------------------------
# Issue 4: bundles in OCI registries (tests/oci.py, tests/registry_proxy.py).

PushImage = Callable[[str, str], str]
"""``push_image(registry_host, "repo:tag")`` -> the pushed reference (a busybox test image)."""


@pytest.fixture(scope="session")
def push_image(podman_service: Engine, test_image: TestImage) -> PushImage:
    """Pushes the test invocation image with real ``podman push`` (plain HTTP)."""
    from tests.oci import RUN_SCRIPT

    def push(host: str, target: str) -> str:
        local = test_image("hello-oci", RUN_SCRIPT)
        remote = f"{host}/{target}"
        podman_service.podman("push", "--tls-verify=false", local, remote)
        return remote

    return push


@pytest.fixture
def registry_proxy(oci_registry: str) -> Iterator[RegistryProxy]:
    """A bearer-token front (counting requests, injecting faults) for the session's registry."""
    from tests.registry_proxy import registry_proxy as start

    with start(oci_registry) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def images() -> Images:
    """porter-bundle's own images (``make image``), in the worktree's build/podman store."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make test` installs it with APT_PACKAGES)")
    return build_images()
