"""The fuzzer's server: real (SQLite file, services, gRPC on port 0) with a scripted executor,
and resources at the addresses the fuzzer aims at (tests.fuzz.NAMESPACES, NAMES)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter_bundle.api.server import start_server
from porter_bundle.config import Settings, sqlite_url
from porter_bundle.service import Services
from porter_bundle.store import Database, Keyring
from tests.fake_executor import FakeExecutor

BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "fz",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/fz-installer:v1"}],
    "definitions": {
        "text": {"type": "string", "pattern": "^[a-z]*$"},
        "count": {"type": "integer", "maximum": 10},
        "secret": {"type": "string", "writeOnly": True},
    },
    "parameters": {
        "p": {"definition": "text", "destination": {"env": "P"}, "required": False},
        "log_level": {"definition": "count", "destination": {"env": "LOG_LEVEL"}},
        "x": {"definition": "secret", "destination": {"path": "/cnab/app/x"}},
    },
    "credentials": {"c": {"env": "C", "required": True}},
}


def seed(channel: grpc.Channel) -> None:
    """The resources the fuzzer's requests address."""
    stub = porter_bundle_pb2_grpc.PorterBundleStub(channel)
    stub.CreateBundle(
        pb.CreateBundleRequest(reference="localhost/fz:v1.0.0", bundle_json=json.dumps(BUNDLE))
    )
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace="fz",
                name="creds",
                credentials=[NamedValueSource(name="c", source=ValueSource(env="FZ_UNSET_X"))],
            )
        )
    )
    params = ParameterSet(namespace="fz", name="params")
    entry = params.parameters.add(name="log_level")
    entry.source.value.number_value = 3
    stub.CreateParameterSet(pb.CreateParameterSetRequest(parameter_set=params))
    inst = Installation(
        namespace="fz",
        name="app",
        bundle=BundleReference(repository="localhost/fz", version="1.0.0"),
        credential_sets=["creds"],
        parameter_sets=["params"],
    )
    inst.custom.update({"team": "fz"})
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))


@contextlib.contextmanager
def fuzz_server() -> Iterator[str]:
    """A seeded server on 127.0.0.1:<free port> in its own event loop thread: its target."""
    with tempfile.TemporaryDirectory(prefix="pb-fuzz-") as tmp:
        store = Database(sqlite_url(Path(tmp) / "fuzz.db"), keyring=Keyring.generate())
        store.migrate()
        fake = FakeExecutor()
        services = Services.create(store, executor=lambda: fake)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fuzz-server", daemon=True)
        thread.start()
        running = asyncio.run_coroutine_threadsafe(
            start_server(Settings(address="127.0.0.1:0"), services, services.blocking.pool), loop
        ).result(timeout=30)
        target = f"127.0.0.1:{running.port}"
        try:
            with grpc.insecure_channel(target) as channel:
                seed(channel)
            yield target
        finally:
            asyncio.run_coroutine_threadsafe(running.stop(0), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
            store.close()
