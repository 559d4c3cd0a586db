"""``porter-bundle apply`` against a real server (a fake container engine behind it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.run_pb2 import RUN_STATE_PENDING, RUN_STATE_RUNNING
from porter_bundle.cli import main
from porter_bundle.service import Services
from tests.fake_executor import FakeExecutor
from tests.helpers import FIXTURES, wait_until
from tests.porter_documents import PORTER, prepare_fixture_world


@pytest.fixture
def services(store) -> Services:
    fake = FakeExecutor()
    return Services.create(store, executor=lambda: fake)


@pytest.fixture
def world(stub, monkeypatch):
    monkeypatch.setenv("USER", "porter-user")
    prepare_fixture_world(stub)


def cli(capsys, server, *args: str) -> tuple[int, list[str]]:
    code = main(["apply", "--server", server.target, *args])
    out = capsys.readouterr().out
    return code, out.splitlines()


def settle(stub, timeout: float = 20.0) -> None:
    request = pb.ListInstallationsRequest(all_namespaces=True)
    wait_until(
        lambda: all(
            i.status.run_state not in (RUN_STATE_PENDING, RUN_STATE_RUNNING)
            for i in stub.ListInstallations(request).installations
        ),
        "the runs to end",
        timeout=timeout,
    )


def test_porter_testdata_directory(capsys, server, stub, world):
    testdata = PORTER / "tests" / "testdata"
    code, lines = cli(capsys, server, str(testdata))
    assert code == 1  # the invalid-schema.yaml documents fail
    text = "\n".join(lines)
    assert f"{testdata}/creds/invalid-schema.yaml: error: INVALID_ARGUMENT" in text
    assert (
        "    schemaVersion: the schema version is 0.38.5 but the supported CredentialSet "
        "schema version is 1.0.1 (schema check 'exact')"
    ) in lines
    assert (
        f"{testdata}/creds/mybuns.yaml: CredentialSet mybuns (global namespace): created" in lines
    )
    assert f"{testdata}/params/myenv.yaml: ParameterSet myenv (global namespace): created" in lines
    install = [line for line in lines if line.startswith(f"{testdata}/installations/mybuns.yaml")]
    assert install and install[0].startswith(
        f"{testdata}/installations/mybuns.yaml: Installation mybuns (global namespace): created; "
        "install: the bundle has not been installed successfully yet (run "
    )
    assert '    status: "defined" -> "installed"' in lines
    # Sets before installations, whatever the order of the files.
    first_install = next(i for i, line in enumerate(lines) if ": Installation " in line)
    assert all(": Installation " not in line for line in lines[:first_install])
    assert not any(
        ": CredentialSet " in line or ": ParameterSet " in line for line in lines[first_install:]
    )
    settle(stub)

    # Applying again: nothing to do, except the same refusals.
    code, lines = cli(capsys, server, str(testdata / "installations" / "mybuns.yaml"))
    assert code == 0
    assert lines == [
        f"{testdata}/installations/mybuns.yaml: Installation mybuns (global namespace): unchanged; "
        "none: in sync: bundle, parameters, credential and parameter sets match the last "
        f"successful install (run {_last_run(stub)})"
    ]


def _last_run(stub) -> str:
    inst = stub.GetInstallation(pb.GetInstallationRequest(name="mybuns")).installation
    return inst.status.run_id


STREAM = """\
schemaType: Installation
schemaVersion: 1.0.2
name: web
namespace: dev
bundle: {repository: localhost:5000/myenv, version: v0.1.0}
credentialSets: [web]
parameterSets: [web]
---
schemaType: ParameterSet
schemaVersion: 1.1.0
name: web
namespace: dev
parameters:
  - {name: logLevel, source: {value: info}}
---
# an operator resource
apiVersion: getporter.org/v1
kind: CredentialSet
metadata: {name: web}
spec:
  schemaVersion: 1.0.1
  name: web
  namespace: dev
  credentials:
    - {name: username, source: {env: USER}}
"""


def test_a_stream_of_documents_dry_run_then_for_real(capsys, server, stub, world, tmp_path: Path):
    path = tmp_path / "web.yaml"
    path.write_text(STREAM)
    code, lines = cli(capsys, server, str(path), "--dry-run")
    assert code == 1  # the installation's sets do not exist yet: the dry run says so
    assert lines[:2] == [
        f"(dry run) {path}#2: ParameterSet dev/web: created",
        f"(dry run) {path}#3: CredentialSet dev/web: created",
    ]
    assert lines[2].startswith(f"{path}#1: error: FAILED_PRECONDITION: parameter set 'web'")
    assert (
        stub.ListParameterSets(pb.ListParameterSetsRequest(all_namespaces=True)).parameter_sets
        == []
    )

    code, lines = cli(capsys, server, str(path))
    assert code == 0, lines
    assert lines[0] == f"{path}#2: ParameterSet dev/web: created"
    assert lines[1] == f"{path}#3: CredentialSet dev/web: created"
    assert lines[2].startswith(f"{path}#1: Installation dev/web: created; install: ")
    settle(stub)

    path.write_text(STREAM.replace("value: info", "value: debug"))
    code, lines = cli(capsys, server, str(path), "--dry-run")
    assert code == 0
    assert lines[0] == f"(dry run) {path}#2: ParameterSet dev/web: updated (parameters)"
    # Each document is decided against what the server has: a dry run does not see the
    # change an earlier document of the same run would make.
    assert lines[2].startswith(
        f"(dry run) {path}#1: Installation dev/web: unchanged; none: in sync"
    )

    code, lines = cli(capsys, server, str(path))
    assert code == 0
    assert lines[1] == f"{path}#3: CredentialSet dev/web: unchanged"
    assert lines[2].startswith(f"{path}#1: Installation dev/web: unchanged; upgrade: out of sync")
    assert "started)" in lines[2]
    assert '    parameters.logLevel: "info" -> "debug"' in lines
    settle(stub)

    code, lines = cli(capsys, server, str(path), "--force")
    assert code == 0
    assert lines[2].startswith(f"{path}#1: Installation dev/web: unchanged; upgrade: in sync; ")
    settle(stub)


def test_bad_arguments_and_documents(capsys, server, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "bad.yaml").write_text("name: [")
    (tmp_path / "what.json").write_text('{"name": "x"}')
    empty = tmp_path / "empty"
    empty.mkdir()
    code, lines = cli(capsys, server, str(tmp_path / "missing.yaml"), str(empty), str(tmp_path))
    assert code == 1
    assert lines == [
        f"{tmp_path / 'missing.yaml'}: error: no such file or directory",
        f"{empty}: error: no .yaml, .yml, .json files in the directory",
        f"{tmp_path / 'bad.yaml'}: error: document: not valid YAML or JSON: "
        "while parsing a flow node expected the node content, but found '<stream end>' "
        "(line 1, column 8)",
        f"{tmp_path / 'what.json'}: error: cannot tell the type of document; give it a "
        "schemaType (Installation, CredentialSet or ParameterSet)",
    ]


def test_help_lists_apply(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["apply", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--dry-run" in out and "--force" in out and "--server" in out


@pytest.mark.slow
def test_processes_schema_check_from_the_environment(tmp_path: Path):
    """A real `porter-bundle serve` process (schema check from its env) and `porter-bundle apply`."""
    import signal
    import subprocess

    from tests.test_cli import BIN, start

    env = {"PORTER_BUNDLE_DATA_DIR": str(tmp_path / "data"), "PORTER_BUNDLE_SCHEMA_CHECK": "none"}
    proc, port = start(tmp_path, env, "--address", "127.0.0.1:0")
    try:
        old = PORTER / "tests" / "testdata" / "params" / "invalid-schema.yaml"
        done = subprocess.run(
            [str(BIN), "apply", "--server", f"127.0.0.1:{port}", str(old)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines() == [
            f"{old}: ParameterSet mybuns (global namespace): created",
            "    warning: WARNING: the schema version is 0.38.5 but the supported ParameterSet "
            "schema version is 1.0.1 or 1.1.0 (schema check 'none')",
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    refused = subprocess.run(
        [str(BIN), "serve", "--schema-check", "loose"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "'loose' is not one of" in refused.stderr


def test_namespace_flag_places_documents_without_one(capsys, server, stub, tmp_path: Path):
    # Porter's own file (no namespace), as a user writes it: value unquoted, a name twice.
    raw = (PORTER / "tests" / "testdata" / "params" / "mybuns.yaml").read_text()
    assert "namespace" not in raw and 'value: "11"' in raw
    doc = (
        raw.replace('value: "11"', "value: 11")
        + "  - name: log_level\n    source:\n      value: 12\n"
    )
    # The operator always writes namespace, possibly "": the document's own field wins.
    operator = (
        FIXTURES / "operator" / "api" / "v1" / "testdata" / "parameter-set.yaml"
    ).read_text()
    assert "namespace: dev\n" in operator
    (tmp_path / "a.yaml").write_text(
        doc + "---\n" + operator.replace("namespace: dev\n", 'namespace: ""\n')
    )
    code, lines = cli(capsys, server, "-n", "team-a", str(tmp_path / "a.yaml"))
    assert code == 0, lines
    assert lines == [
        f"{tmp_path}/a.yaml#1: ParameterSet team-a/mybuns: created",
        "    warning: parameters[1]: 'log_level' is also listed at parameters[0]; "
        "the last entry wins, as in Porter",
        f"{tmp_path}/a.yaml#2: ParameterSet porter-test-me (global namespace): created",
    ]
    got = stub.GetParameterSet(pb.GetParameterSetRequest(namespace="team-a", name="mybuns"))
    [entry] = got.parameter_set.parameters
    assert entry.source.value.string_value == "12"  # schemaVersion 1.0.1: the text, as Porter
    assert stub.GetParameterSet(pb.GetParameterSetRequest(name="porter-test-me")).parameter_set
    # Without -n: the global namespace, as before.
    code, lines = cli(capsys, server, str(tmp_path / "a.yaml"))
    assert lines[0] == f"{tmp_path}/a.yaml#1: ParameterSet mybuns (global namespace): created"
