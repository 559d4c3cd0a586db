"""``porter-bundle agent`` against a real server (engine: the scripted stand-in), as the Porter
operator's Jobs call it: the documents it writes, the arguments it passes, Porter's exit codes
and JSON shapes."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import yaml

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle import agent
from porter_bundle.agent.commands import request_id
from porter_bundle.executor import ContainerResult
from porter_bundle.service import Services
from tests.fake_executor import FakeExecutor, services_on
from tests.helpers import secret_volume

NS = "dev"
BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "hello",
    "version": "0.1.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/hello-installer:v1"}],
    "definitions": {"str": {"type": "string"}, "secret": {"type": "string", "writeOnly": True}},
    "parameters": {"greeting": {"definition": "str", "destination": {"env": "GREETING"}}},
    "credentials": {"token": {"env": "TOKEN"}},
    "outputs": {
        "message": {"definition": "str", "path": "/cnab/app/outputs/message"},
        "key": {"definition": "secret", "path": "/cnab/app/outputs/key"},
    },
}
LABELS = (
    "getporter.org/jobType=bundle-installer getporter.org/managed=true "
    "getporter.org/resourceGeneration=1 getporter.org/resourceKind=AgentAction "
    "getporter.org/resourceName=hello-abc12 getporter.org/retry="
)


@pytest.fixture
def fake() -> FakeExecutor:
    engine = FakeExecutor()
    engine.behaviour = lambda spec: ContainerResult(
        exit_code=0,
        logs=f"hello {spec.env.get('GREETING')}\n".encode(),
        outputs={"message": b"hi there", "key": b"s3cret-key"},
    )
    return engine


@pytest.fixture
def services(store, fake) -> Services:
    return services_on(store, fake)


@pytest.fixture
def job(tmp_path, server, stub) -> Any:
    """Runs the agent as the operator's Job would: config Secret, workdir files, env."""
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/hello:v0.1.0", bundle_json=json.dumps(BUNDLE)
        )
    )
    config = yaml.safe_dump(
        {
            "default-storage": "porter-bundle",
            "storage": [
                {
                    "name": "porter-bundle",
                    "plugin": "porter-bundle",
                    "config": {"address": server.target},
                }
            ],
        }
    )
    secret_volume(tmp_path / "porter-config", {"config.yaml": config})
    workdir = tmp_path / "porter-workdir"
    workdir.mkdir()
    env = {
        "PORTER_CONFIG": str(tmp_path / "porter-config"),
        "PORTER_HOME": str(tmp_path / "home"),
        "KUBE_NAMESPACE": NS,
        "LABELS": LABELS,
    }

    def run(*args: str, files: dict[str, Any] | None = None, **extra: str) -> tuple[int, str, str]:
        for name, doc in (files or {}).items():
            (workdir / name).write_text(yaml.safe_dump(doc))
        out, err = io.StringIO(), io.StringIO()
        argv = [
            str(workdir / a) if a.endswith(".yaml") and (workdir / a).exists() else a for a in args
        ]
        code = agent.main(argv, env={**env, **extra}, out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    return run


def installation(**spec: Any) -> dict[str, Any]:
    """As the operator writes it: yaml of the CRD spec, no schemaType, namespace present."""
    return {
        "schemaVersion": "1.0.2",
        "name": "hello",
        "namespace": NS,
        "bundle": {"repository": "localhost:5000/hello", "version": "0.1.0"},
        "credentialSets": ["hello-creds"],
        "parameters": {"greeting": "world"},
        **spec,
    }


CREDS = {
    "schemaVersion": "1.0.1",
    "name": "hello-creds",
    "namespace": NS,
    "credentials": [{"name": "token", "source": {"value": "tok"}}],
}


def test_install_waits_for_the_run_prints_its_log_and_lists_outputs(job, stub):
    code, out, err = job(
        "credentials", "apply", "credentials.yaml", files={"credentials.yaml": CREDS}
    )
    assert code == 0, err
    assert "Applied dev/hello-creds credential set" in out
    assert err.splitlines()[-1].startswith("porter credentials apply ")

    code, out, err = job(
        "installation", "apply", "installation.yaml", files={"installation.yaml": installation()}
    )
    assert code == 0, err
    assert "Loading configuration config.yaml into" in err
    assert "hello world" in out and out.startswith("install dev/hello")
    runs = stub.ListInstallationRuns(
        pb.ListInstallationRunsRequest(namespace=NS, name="hello")
    ).runs
    assert len(runs) == 1 and runs[0].request_id == request_id(
        {"KUBE_NAMESPACE": NS, "LABELS": LABELS}
    )

    # The same action again (a pod retry): attached, nothing new.
    code, out, _ = job("installation", "apply", "installation.yaml")
    assert code == 0 and "attached" in out
    # A new AgentAction for the same generation (the retry annotation): in sync.
    code, out, _ = job(
        "installation", "apply", "installation.yaml", LABELS=LABELS.replace("retry=", "retry=2")
    )
    assert code == 0 and "The installation is already up-to-date." in out
    assert (
        len(
            stub.ListInstallationRuns(
                pb.ListInstallationRunsRequest(namespace=NS, name="hello")
            ).runs
        )
        == 1
    )

    code, out, _ = job("installation", "outputs", "list", "-n", NS, "-i", "hello", "-o", "json")
    assert code == 0
    assert json.loads(out) == [
        {"name": "key", "type": "string", "sensitive": True, "value": None},  # withheld
        {"name": "message", "type": "string", "sensitive": False, "value": "hi there"},
    ]


def test_a_failed_run_exits_1(job, fake):
    job("credentials", "apply", "credentials.yaml", files={"credentials.yaml": CREDS})
    fake.behaviour = lambda spec: ContainerResult(exit_code=3, logs=b"boom\n")
    code, out, err = job(
        "installation", "apply", "installation.yaml", files={"installation.yaml": installation()}
    )
    assert code == 1 and "boom" in out
    assert "Error: run " in err and "did not succeed" in err


def test_sets_delete_and_list_as_porter(job):
    params = {
        "schemaVersion": "1.1.0",
        "name": "p",
        "namespace": NS,
        "parameters": [{"name": "greeting", "source": {"value": "x"}}],
    }
    assert job("parameters", "apply", "parameters.yaml", files={"parameters.yaml": params})[0] == 0
    code, out, _ = job("parameters", "list", "-n", NS, "-o", "json")
    listed = json.loads(out)
    assert code == 0 and [(p["namespace"], p["name"]) for p in listed] == [(NS, "p")]
    assert listed[0]["parameters"] == [{"name": "greeting", "source": {"value": "x"}}]
    assert job("parameters", "delete", "-n", NS, "p")[0] == 0
    assert job("parameters", "delete", "p", "-n", NS)[0] == 0  # missing: fine, as Porter
    assert json.loads(job("parameters", "list", "-n", NS, "-o", "json")[1]) == []
    assert job("credentials", "delete", "-n", "", "nothing")[0] == 0


def test_plugins_are_recorded_and_listed(job, tmp_path):
    plugins = {"schemaVersion": "1.0.0", "plugins": {"kubernetes": {"version": "v1.0.0"}}}
    code, out, _ = job("plugins", "install", "-f", "plugins.yaml", files={"plugins.yaml": plugins})
    assert code == 0 and "kubernetes" in out
    code, out, _ = job("plugins", "list", "-o", "json")
    assert [p["name"] for p in json.loads(out)] == ["kubernetes"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["installation", "frobnicate"],
            'Error: unknown command "frobnicate" for "porter installations"',
        ),
        (["credentials", "delete", "--bogus"], "Error: unknown flag: --bogus"),
        (["installation", "apply", "missing.yaml"], "Error: could not read file missing.yaml"),
    ],
)
def test_refusals_exit_1_with_porters_error_line(job, args, message):
    code, _, err = job(*args)
    assert code == 1 and err.splitlines()[-1].startswith(message)


def test_request_ids_follow_the_action_not_the_pod():
    base = {"KUBE_NAMESPACE": NS, "LABELS": LABELS}
    assert request_id(base) == "k8s/dev/AgentAction/hello-abc12/1/"
    assert request_id(
        {**base, "LABELS": LABELS.replace("getporter.org/", "porter.sh/")}
    ) == request_id(base)
    assert request_id({**base, "LABELS": LABELS.replace("retry=", "retry=1")}) != request_id(base)
    assert request_id({"LABELS": "team=a"}) == ""
    long = {**base, "LABELS": LABELS.replace("hello-abc12", "x" * 200)}
    assert len(request_id(long)) <= 120


def test_the_cli_hands_agent_arguments_over_untouched(tmp_path, capsys):
    from porter_bundle import cli

    code = cli.main(["agent", "installation", "-n", "", "bogus"])
    assert code == 1
    assert 'unknown command "bogus"' in capsys.readouterr().err


def test_dry_run_decides_and_starts_nothing_and_credentials_list_shows_porters_documents(job, stub):
    job("credentials", "apply", "credentials.yaml", files={"credentials.yaml": CREDS})
    code, out, _ = job(
        "installation", "apply", "--dry-run", "installation.yaml",
        files={"installation.yaml": installation()},
    )  # fmt: skip
    assert code == 0 and out.startswith("(dry run) dev/hello: ")
    stored = stub.ListInstallations(pb.ListInstallationsRequest(namespace=NS)).installations
    assert list(stored) == []  # nothing stored, nothing run
    code, out, _ = job("creds", "ls", "-o", "json", "-n", NS)
    listed = json.loads(out)
    assert code == 0 and [c["name"] for c in listed] == ["hello-creds"]
    assert listed[0]["credentials"] == [{"name": "token", "source": {"redacted": True}}]
