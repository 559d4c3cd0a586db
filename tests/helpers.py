"""Test helpers: the vendored fixtures, waiting for a condition with a deadline, waiting for a
run to end, and reading rich error details off a failed call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import RUN_STATE_PENDING, RUN_STATE_RUNNING, Run

FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""Upstream files the tests read (CNAB spec, cnab-to-oci, Porter, the operator): see its README."""

WAIT_SECONDS = 30.0
"""How long a test waits for a condition by default before it fails."""
WAIT_INTERVAL = 0.01
"""How often a waiting test checks its condition by default."""

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    message: str = "the condition",
    *,
    timeout: float = WAIT_SECONDS,
    interval: float = WAIT_INTERVAL,
) -> T:
    """Calls ``predicate`` every ``interval`` seconds until it returns a truthy value, and returns
    that value; after ``timeout`` seconds fails with an AssertionError waiting for ``message``."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)
    return result


async def wait_until_async(
    predicate: Callable[[], T],
    message: str = "the condition",
    *,
    timeout: float = WAIT_SECONDS,  # noqa: ASYNC109 (the same arguments as wait_until)
    interval: float = WAIT_INTERVAL,
) -> T:
    """:func:`wait_until` for a coroutine: the event loop runs on between the checks."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        await asyncio.sleep(interval)
    return result


def ended_run(
    stub: Any, namespace: str, name: str, run_id: str, *, timeout: float = WAIT_SECONDS
) -> Run:
    """Waits until the run is neither PENDING nor RUNNING (GetInstallationRun) and returns it."""
    request = pb.GetInstallationRunRequest(namespace=namespace, name=name, run_id=run_id)

    def ended() -> Run | None:
        run: Run = stub.GetInstallationRun(request).run
        return run if run.state not in (RUN_STATE_PENDING, RUN_STATE_RUNNING) else None

    return wait_until(ended, f"run {run_id} of {namespace}/{name} to end", timeout=timeout)


@dataclass
class RpcFailure:
    """What a client sees of a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)


def failure(call: Callable[..., Any], *args: Any, **kwargs: Any) -> RpcFailure:
    """Runs a call that must fail and returns its status and details."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as err:
        status = status_pb2.Status()
        for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key == "grpc-status-details-bin":
                status.ParseFromString(value)
        result = RpcFailure(err.code(), err.details())  # type: ignore[attr-defined]
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                result.reason, result.domain, result.metadata = (
                    info.reason,
                    info.domain,
                    dict(info.metadata),
                )
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                result.violations = {v.field: v.description for v in bad.field_violations}
        return result
    raise AssertionError("the call succeeded but was expected to fail")


def sensitive_bundle(name: str = "vault") -> dict[str, Any]:
    """A bundle.json (version 1.0.0) with a sensitive parameter ``password`` (``writeOnly``) and
    a plain optional one, ``color``."""
    return {
        "schemaVersion": "v1.0.0",
        "name": name,
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": f"localhost/{name}-installer:v1"}],
        "definitions": {
            "secret": {"type": "string", "writeOnly": True},
            "text": {"type": "string"},
        },
        "parameters": {
            "password": {"definition": "secret", "destination": {"env": "PASSWORD"}},
            "color": {"definition": "text", "destination": {"env": "COLOR"}, "required": False},
        },
    }


async def own_orphans(executor: Any, run_id: str) -> list[str]:
    """A container executor's ``orphans()`` of one test's runs only (their IDs start with
    ``run_id``): other tests may run beside it on the same engine."""
    return [found for found in await executor.orphans() if found.startswith(run_id)]


def result_bundle_installations(
    stub: Any, reference: str, image: str, namespace: str, names: list[str]
) -> None:
    """Registers at ``reference`` (``...:v1``) a bundle of ``image`` with one ``result``
    output (a file of ``/cnab/app/outputs``), named as the reference's repository, and one
    installation of it for each of ``names`` in ``namespace``."""
    from porter.bundle.v1.installation_pb2 import BundleReference, Installation

    repository, _, tag = reference.rpartition(":")
    bundle = {
        "schemaVersion": "v1.0.0",
        "name": repository.rsplit("/", 1)[-1],
        "version": "1.0.0",
        "invocationImages": [{"imageType": "docker", "image": image}],
        "definitions": {"text": {"type": "string"}},
        "outputs": {"result": {"definition": "text", "path": "/cnab/app/outputs/result"}},
    }
    stub.CreateBundle(pb.CreateBundleRequest(reference=reference, bundle_json=json.dumps(bundle)))
    for name in names:
        inst = Installation(
            namespace=namespace,
            name=name,
            bundle=BundleReference(repository=repository, tag=tag),
        )
        stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))


def on_a_terminal(argv: list[str], env: dict[str, str]) -> bytes:
    """What ``argv`` (a program's path first) writes to a pseudo-terminal, until it exits."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.waitpid(pid, 0)
    return seen


def free_port() -> int:
    """A loopback TCP port nothing listens on now (for a process that must be told its port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVER_BIN = Path(sys.executable).with_name("porter-bundle")


def serve_process(
    db: Path | str, podman_host: str, *flags: str, stderr: Any = subprocess.PIPE
) -> tuple[subprocess.Popen[str], int]:
    """``porter-bundle serve`` as a real process over the SQLite file ``db`` (or the database
    URL ``db``) and the engine at ``podman_host`` (runs time out after 120 s), plus ``flags``;
    returns it once it listens, with its port. ``stderr`` is where its log goes (a file, for a
    test that reads it)."""
    proc = subprocess.Popen(
        [
            str(SERVER_BIN),
            "serve",
            "--address",
            "127.0.0.1:0",
            "--database",
            db if isinstance(db, str) else f"sqlite:///{db}",
            "--container-host",
            podman_host,
            "--run-timeout",
            "120",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on port (\d+)", line)
    assert match, f"server did not start: {line!r}"
    return proc, int(match.group(1))


def cnab_validator(schema_file: str) -> Any:
    """A draft-07 validator of the vendored CNAB spec's ``schema/<schema_file>``, which resolves
    the spec's other schemas (a claim's ``bundle`` is a bundle.schema.json document)."""
    import json

    from jsonschema import Draft7Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT7

    folder = FIXTURES / "cnab-spec" / "schema"
    schemas = [json.loads(p.read_text()) for p in sorted(folder.glob("*.schema.json"))]
    registry: Registry[Any] = Registry().with_resources(
        [(s["$id"], DRAFT7.create_resource(s)) for s in schemas]
        + [
            (
                "http://json-schema.org/draft-07/schema",
                DRAFT7.create_resource(Draft7Validator.META_SCHEMA),
            )
        ]
    )
    target = json.loads((folder / schema_file).read_text())
    return Draft7Validator(target, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


def engine_services(store: Any, podman_host: str, **settings: Any) -> Any:
    """Services over ``store`` running actions on the test session's Podman (short limits,
    no network; ``settings`` override the ActionSettings)."""
    from porter_bundle.executor import ContainerExecutor
    from porter_bundle.service import Services
    from porter_bundle.service.actions import ActionSettings

    limits: dict[str, Any] = {
        "run_timeout_seconds": 30,
        "max_concurrent_runs": 2,
        "cancel_grace_seconds": 2,
        "network": None,
        "engine_retry_seconds": 60,
        **settings,
    }
    return Services.create(
        store,
        executor=lambda: ContainerExecutor(podman_host),
        action_settings=ActionSettings(**limits),
    )


def secret_volume(root: Path, files: Mapping[str, str]) -> Path:
    """``root`` laid out as Kubernetes mounts a Secret: the files in a timestamped
    ``..2026_01_01_00_00_00.000000001`` directory, ``..data`` a symlink to it, and each key a
    symlink to ``..data/<key>`` (what the agent must follow, and skip the dot entries of)."""
    stamp = root / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    for key, text in files.items():
        (stamp / key).write_text(text)
        (stamp / key).chmod(0o644)
    (root / "..data").symlink_to(stamp.name)
    for key in files:
        (root / key).symlink_to(f"..data/{key}")
    return root


@contextlib.contextmanager
def serving_in_thread(
    settings: Any, services: Any, **options: Any
) -> Iterator[tuple[Any, asyncio.AbstractEventLoop]]:
    """``start_server(settings, services, ...)`` on an event loop of its own thread: the
    RunningServer and its loop; on exit stopped (grace 0), then the runs' tasks closed as
    ``porter-bundle serve`` does (a container may be in removal), and the loop closed.
    ``options``: more arguments of start_server (``tracer_provider``)."""
    from porter_bundle.api.server import start_server

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server-loop", daemon=True)
    thread.start()
    try:
        running = asyncio.run_coroutine_threadsafe(
            start_server(settings, services, services.blocking.pool, **options), loop
        ).result(30)
        try:
            yield running, loop
        finally:
            try:
                asyncio.run_coroutine_threadsafe(running.stop(0), loop).result(30)
            finally:
                asyncio.run_coroutine_threadsafe(services.actions.close(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@contextlib.contextmanager
def server_in_thread(settings: Any, services: Any, **options: Any) -> Iterator[Any]:
    """The RunningServer of :func:`serving_in_thread`."""
    with serving_in_thread(settings, services, **options) as (running, _loop):
        yield running
