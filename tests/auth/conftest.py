"""A server that authenticates: a token file with one principal per role and namespace."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, RUN_STATE_SUCCEEDED, Run
from porter_bundle.auth.tokens import hash_token
from porter_bundle.config import Settings
from porter_bundle.service import Services
from porter_bundle.service.runs import NewRun, OutputValue

NS, OTHER = "team-a", "team-b"

# name -> role bindings; each principal's token is "tok-<name>".
PRINCIPALS: dict[str, dict[str, list[str]]] = {
    "viewer-a": {"viewer": [NS]},
    "editor-a": {"editor": [NS]},
    "operator-a": {"operator": [NS]},
    "secret-a": {"secret-reader": [NS]},
    "reader-a": {"viewer": [NS], "secret-reader": [NS]},
    "all-b": {"operator": [OTHER], "secret-reader": [OTHER]},
    "editor-all": {"editor": ["*"]},
    "admin": {"operator": ["*"], "secret-reader": ["*"]},
}


def token(name: str) -> str:
    return f"tok-{name}"


def creds(name: str) -> tuple[tuple[str, str], ...]:
    """Call metadata authenticating as ``name``."""
    return (("authorization", f"Bearer {token(name)}"),)


def write_token_file(path: Path, principals: dict[str, dict[str, list[str]]]) -> Path:
    entries = [
        {"name": name, "token": hash_token(token(name)), "roles": roles}
        for name, roles in principals.items()
    ]
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return write_token_file(tmp_path / "tokens.yaml", PRINCIPALS)


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


@pytest.fixture
def server_settings(token_file: Path, audit_path: Path) -> Settings:
    return Settings(address="127.0.0.1:0", token_file=str(token_file), audit_log=str(audit_path))


def call(channel: grpc.Channel, method: str, request, response_cls, *, streaming=False, who=None):
    """Calls ``method`` generically as ``who`` (None: no credentials); returns the response(s)."""
    metadata = creds(who) if who else None
    if streaming:
        stream = channel.unary_stream(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        return list(stream(request, metadata=metadata, timeout=10))
    unary = channel.unary_unary(
        method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    return unary(request, metadata=metadata, timeout=10)


def installation(namespace: str, name: str) -> Installation:
    """An installation of the test bundle localhost:5000/web 0.1.0."""
    return Installation(
        namespace=namespace,
        name=name,
        bundle=BundleReference(repository="localhost:5000/web", version="0.1.0"),
    )


def finished_run(
    services: Services,
    namespace: str,
    name: str,
    *,
    parameters: dict[str, object] | None = None,
    sensitive: frozenset[str] = frozenset(),
    outputs: tuple[OutputValue, ...] = (),
    log: bytes = b"",
) -> Run:
    """A SUCCEEDED install run of an existing installation, recorded without an executor."""
    runs = services.runs
    run, _ = runs.create(
        namespace,
        name,
        NewRun(
            action=ACTION_INSTALL,
            bundle_reference="localhost:5000/web:v0.1.0",
            bundle_digest="sha256:" + "a" * 64,
            bundle_version="0.1.0",
            parameters=parameters or {},
            sensitive_parameters=sensitive,
        ),
    )
    runs.start(run.id)
    if log:
        runs.append_log(run.id, log)
    return runs.finish(run.id, RUN_STATE_SUCCEEDED, "done", outputs)
