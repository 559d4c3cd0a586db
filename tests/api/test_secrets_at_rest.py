"""Secrets stay secret: not in the database file, the server's log lines, nor any response
of a plain caller.

A full scenario through the real server (a fake container engine that echoes every secret
into its log, in small chunks, and fails with a secret in its error): credentials from a
literal value, an environment variable, a file, a command and the secret store; sensitive
parameters from a parameter set's secret source, the installation itself and the request;
a sensitive output.
Then the SQLite file (and its -wal), the captured log and every response are searched for
each secret value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from installation.v1alpha1 import installation_pb2 as ipb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle.executor import ContainerResult, ContainerSpec, LogSink
from porter_bundle.service import Services
from porter_bundle.service.actions import ActionSettings
from porter_bundle.service.redact import LogRedactingFilter
from porter_bundle.service.sources import DirectorySecretStore
from porter_bundle.store import Database
from tests.fake_executor import FakeExecutor
from tests.helpers import ended_run

NS, NAME, REF = "dev", "vault", "localhost:5000/vault:v1.0.0"

SECRETS = {
    "literal credential": "cred-literal-Aq7Zp1",
    "env credential": "cred-env-Bx82Lm",
    "path credential": "cred-path-Cy93Nn",
    "command credential": "cred-command-Dz04Oo",
    "secret-store credential": "cred-store-Ea15Pp",
    "sensitive parameter (set, secret source)": "param-set-Fb26Qq",
    "sensitive parameter (request)": "param-request-Gc37Rr",
    "sensitive parameter (installation)": "param-installation-Jf60Uu",
    "sensitive output": "output-secret-Hd48Ss",
}
PUBLIC_OUTPUT = "public-output-Ie59Tt"

BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "vault",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/vault-installer:v1"}],
    "definitions": {
        "secret-string": {"type": "string", "writeOnly": True},
        "string": {"type": "string"},
        "level": {"type": "integer", "default": 1},
    },
    "parameters": {
        "password": {"definition": "secret-string", "destination": {"env": "PASSWORD"}},
        "apikey": {"definition": "secret-string", "destination": {"path": "/cnab/app/apikey"}},
        "dbpass": {"definition": "secret-string", "destination": {"env": "DBPASS"}},
        "level": {"definition": "level", "destination": {"env": "LEVEL"}},
    },
    "credentials": {
        "literal": {"env": "LITERAL"},
        "fromenv": {"env": "FROMENV"},
        "frompath": {"path": "/home/nonroot/frompath"},
        "fromcommand": {"env": "FROMCOMMAND"},
        "fromstore": {"env": "FROMSTORE"},
    },
    "outputs": {
        "token": {"definition": "secret-string", "path": "/cnab/app/outputs/token"},
        "endpoint": {"definition": "string", "path": "/cnab/app/outputs/endpoint"},
    },
}


class EchoingExecutor(FakeExecutor):
    """Prints every secret it was given (3 bytes at a time, so secrets straddle chunks)."""

    async def execute(
        self, spec: ContainerSpec, on_log: LogSink | None = None, *, keep: bool = False
    ) -> ContainerResult:
        self.specs.append(spec)
        assert on_log is not None
        given = [*spec.env.values(), *(v.decode() for v in spec.files.values())]
        text = "".join(f"I was given {v}\n" for v in given if len(v) < 100).encode()
        for i in range(0, len(text), 3):
            await on_log(text[i : i + 3])
        if spec.env["CNAB_ACTION"] == "install":
            await on_log(f"token written: {SECRETS['sensitive output']}\n".encode())
            outputs = {
                "token": SECRETS["sensitive output"].encode(),
                "endpoint": PUBLIC_OUTPUT.encode(),
            }
            return ContainerResult(exit_code=0, outputs=outputs)
        return ContainerResult(
            exit_code=None, error=f"engine refused: env LITERAL={spec.env['LITERAL']} is bad"
        )


@pytest.fixture
def services(store: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "store-cred").write_text(SECRETS["secret-store credential"])
    (secrets / "set-param").write_text(SECRETS["sensitive parameter (set, secret source)"])
    (tmp_path / "cred-file").write_text(SECRETS["path credential"])
    monkeypatch.setenv("PB_TEST_CRED", SECRETS["env credential"])
    fake = EchoingExecutor()
    return Services.create(
        store,
        executor=lambda: fake,
        action_settings=ActionSettings(
            run_timeout_seconds=30,
            max_concurrent_runs=1,
            cancel_grace_seconds=10,
            network=None,
            engine_retry_seconds=60,
        ),
        secrets=DirectorySecretStore(secrets),
    )


def _wait(stub: Any, run_id: str) -> Any:
    return ended_run(stub, NS, NAME, run_id)


def test_no_secret_in_database_log_or_plain_responses(
    stub: Any,
    channel: grpc.Channel,
    server: Any,
    db_path: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    caplog.handler.addFilter(LogRedactingFilter())  # as `porter-bundle serve` sets up its handler
    caplog.set_level(logging.DEBUG)
    responses: list[Message] = []

    def call(method: Callable[..., Message], request: Message) -> Any:
        response = method(request)
        responses.append(response)
        return response

    def literal(text: str) -> ValueSource:
        source = ValueSource()
        json_format.ParseDict(text, source.value)
        return source

    call(stub.CreateBundle, pb.CreateBundleRequest(reference=REF, bundle_json=json.dumps(BUNDLE)))
    producing = "printf '%s-%s' cred-command Dz04Oo"  # the command's text holds no secret
    call(
        stub.CreateCredentialSet,
        pb.CreateCredentialSetRequest(
            credential_set=CredentialSet(
                namespace=NS,
                name="creds",
                credentials=[
                    NamedValueSource(name="literal", source=literal(SECRETS["literal credential"])),
                    NamedValueSource(name="fromenv", source=ValueSource(env="PB_TEST_CRED")),
                    NamedValueSource(
                        name="frompath", source=ValueSource(path=str(tmp_path / "cred-file"))
                    ),
                    NamedValueSource(name="fromcommand", source=ValueSource(command=producing)),
                    NamedValueSource(name="fromstore", source=ValueSource(secret="store-cred")),
                ],
            )
        ),
    )
    call(
        stub.CreateParameterSet,
        pb.CreateParameterSetRequest(
            parameter_set=ParameterSet(
                namespace=NS,
                name="params",
                parameters=[
                    NamedValueSource(name="password", source=ValueSource(secret="set-param")),
                    NamedValueSource(name="level", source=literal("3")),
                ],
            )
        ),
    )
    inst = Installation(
        namespace=NS,
        name=NAME,
        bundle=BundleReference(repository="localhost:5000/vault", version="1.0.0"),
        credential_sets=["creds"],
        parameter_sets=["params"],
    )
    inst.parameters.update({"dbpass": SECRETS["sensitive parameter (installation)"]})
    call(stub.CreateInstallation, pb.CreateInstallationRequest(installation=inst))

    request = pb.ExecuteActionRequest(namespace=NS, name=NAME, action="install")
    request.parameters.update({"apikey": SECRETS["sensitive parameter (request)"]})
    install = call(stub.ExecuteAction, request).run
    done = _wait(stub, install.id)
    assert done.state == RUN_STATE_SUCCEEDED, done.message
    request = pb.ExecuteActionRequest(namespace=NS, name=NAME, action="upgrade")
    request.parameters.update({"apikey": SECRETS["sensitive parameter (request)"]})
    upgrade = call(stub.ExecuteAction, request).run
    failed = _wait(stub, upgrade.id)
    assert failed.state == RUN_STATE_FAILED
    assert failed.message == "engine refused: env LITERAL=*** is bad"

    # Every read a plain caller can make.
    for run_id in (install.id, upgrade.id):
        for method, req in (
            (stub.GetInstallationRun, pb.GetInstallationRunRequest),
            (stub.ListInstallationRunOutputs, pb.ListInstallationRunOutputsRequest),
            (stub.GetInstallationRunLogs, pb.GetInstallationRunLogsRequest),
        ):
            call(method, req(namespace=NS, name=NAME, run_id=run_id))
        for chunk in stub.StreamRunLogs(
            pb.StreamRunLogsRequest(namespace=NS, name=NAME, run_id=run_id)
        ):
            responses.append(chunk)
    logs = stub.GetInstallationRunLogs(
        pb.GetInstallationRunLogsRequest(namespace=NS, name=NAME, run_id=install.id)
    ).logs
    # Masked, not dropped, each byte a star (offsets never move); outputs masked too.
    assert re.search(r"^I was given \*{8,}$", logs, re.M) and "I was given 3\n" in logs
    assert re.search(r"^token written: \*{8,}$", logs, re.M)
    call(stub.GetInstallation, pb.GetInstallationRequest(namespace=NS, name=NAME))
    call(stub.ListInstallations, pb.ListInstallationsRequest(all_namespaces=True))
    call(stub.ListInstallationRuns, pb.ListInstallationRunsRequest(namespace=NS, name=NAME))
    call(stub.GetCredentialSet, pb.GetCredentialSetRequest(namespace=NS, name="creds"))
    call(stub.ListCredentialSets, pb.ListCredentialSetsRequest(all_namespaces=True))
    call(stub.GetParameterSet, pb.GetParameterSetRequest(namespace=NS, name="params"))
    call(stub.ListParameterSets, pb.ListParameterSetsRequest(all_namespaces=True))
    for fmt in (pb.DOCUMENT_FORMAT_YAML, pb.DOCUMENT_FORMAT_JSON):
        address = {"namespace": NS, "format": fmt}
        call(stub.ExportInstallation, pb.ExportInstallationRequest(name=NAME, **address))
        call(stub.ExportCredentialSet, pb.ExportCredentialSetRequest(name="creds", **address))
        call(stub.ExportParameterSet, pb.ExportParameterSetRequest(name="params", **address))
    legacy = porter_pb2_grpc.PorterStub(channel)
    call(legacy.ListInstallations, ipb.ListInstallationsRequest(namespace=NS))
    latest = call(
        legacy.ListInstallationLatestOutputs,
        ipb.ListInstallationLatestOutputRequest(name=NAME, namespace=NS),
    )
    # The public output is there: the search below would find a value that leaked.
    assert PUBLIC_OUTPUT in str(latest)

    server.stop(0)
    texts = {
        "responses": b"".join(r.SerializeToString() for r in responses)
        + "".join(str(r) for r in responses).encode(),
        "server log": caplog.text.encode(),
    }
    if server.store.is_sqlite:
        server.store.close()
        files = [db_path, Path(f"{db_path}-wal")]
        texts["database"] = b"".join(p.read_bytes() for p in files if p.exists())
        assert PUBLIC_OUTPUT.encode() in texts["database"]
    for what, secret in SECRETS.items():
        for where, data in texts.items():
            assert secret.encode() not in data, f"the {what} is in the {where}"
