"""The client commands end to end: a real server on port 0, real SQLite, real Podman running the
busybox "hello" bundle; each command runs in-process exactly as ``porter-bundle ARGS`` would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml

from porter_bundle.cli import main
from porter_bundle.client import Client, Target
from porter_bundle.service import Services
from tests.cli.hello import RUN_SCRIPT, bundle_json
from tests.helpers import engine_services

pytestmark = pytest.mark.slow  # real containers
BIN = Path(sys.executable).with_name("porter-bundle")
NS = "dev"
REF = "localhost:5000/hello:v0.1.0"
CREDS = f"""schemaType: CredentialSet
schemaVersion: 1.0.1
namespace: {NS}
name: hello-creds
credentials:
  - {{name: password, source: {{value: pw-Zr61-secret}}}}
"""
PARAMS = f"""schemaType: ParameterSet
schemaVersion: 1.1.0
namespace: {NS}
name: hello-params
parameters:
  - {{name: greeting, source: {{value: hi}}}}
"""


@pytest.fixture
def services(store, podman_host) -> Services:
    return engine_services(store, podman_host)


@pytest.fixture
def world(cli, tmp_path: Path, test_image):
    """Sets and a registered bundle, through the commands."""
    (tmp_path / "creds.yaml").write_text(CREDS)
    (tmp_path / "params.yaml").write_text(PARAMS)
    code, out, _ = cli("credentials", "apply", str(tmp_path / "creds.yaml"))
    assert code == 0 and "CredentialSet dev/hello-creds: created" in out
    code, out, _ = cli("parameters", "apply", str(tmp_path / "params.yaml"))
    assert code == 0 and "ParameterSet dev/hello-params: created" in out
    image = test_image("hello", RUN_SCRIPT)
    (tmp_path / "bundle.json").write_text(bundle_json(image))
    code, out, _ = cli("bundles", "register", str(tmp_path / "bundle.json"), "--reference", REF)
    assert (code, out) == (0, f"{REF} hello 0.1.0\n")


def test_sets_and_bundles(cli, world):
    code, out, _ = cli("credentials", "list", "-n", NS)
    assert code == 0
    assert out.split("\n")[0].split() == ["NAMESPACE", "NAME", "CREDENTIALS", "MODIFIED"]
    assert out.split("\n")[1].split()[:3] == [NS, "hello-creds", "password"]
    code, out, _ = cli("credentials", "list")  # the global namespace has none
    assert (code, out.splitlines()[1:]) == (0, [])
    code, out, _ = cli("credentials", "list", "--all-namespaces", "-o", "json")
    listed = json.loads(out)
    assert [(s["namespace"], s["name"]) for s in listed] == [(NS, "hello-creds")]
    assert listed[0]["credentials"][0]["source"] == {"redacted": True}
    code, out, _ = cli("credentials", "show", "hello-creds", "-n", NS)
    assert code == 0 and out.splitlines()[-1].split() == ["password", "value:", "******"]
    assert "pw-Zr61" not in out
    code, out, _ = cli("parameters", "show", "hello-params", "-n", NS, "-o", "yaml")
    assert yaml.safe_load(out)["parameters"] == [{"name": "greeting", "source": {"value": "hi"}}]
    code, out, _ = cli("credentials", "export", "hello-creds", "-n", NS)
    doc = yaml.safe_load(out)
    assert doc["schemaType"] == "CredentialSet" and "pw-Zr61" not in out

    code, out, _ = cli("bundles", "list")
    assert out.splitlines()[1].split()[:4] == [REF, "hello", "0.1.0", "registered"]
    code, out, _ = cli("bundles", "show", REF)
    assert "Actions:     install, upgrade, uninstall, fail, hang" in out
    assert "Parameters:  greeting, times" in out
    assert "Credentials: password" in out
    code, out, _ = cli("bundles", "show", REF, "-o", "json")
    assert (
        json.loads(out)["reference"] == REF
        and json.loads(out)["source"] == "BUNDLE_SOURCE_REGISTERED"
    )

    code, _, err = cli("credentials", "show", "nope", "-n", NS)
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = cli("bundles", "delete", REF)
    assert code == 0
    code, out, _ = cli("bundles", "list", "-o", "json")
    assert json.loads(out) == []
    code, out, _ = cli("parameters", "delete", "hello-params", "-n", NS)
    assert (code, out) == (0, "deleted parameter set dev/hello-params\n")


def test_install_outputs_upgrade_invoke_uninstall(cli, world, server):
    code, out, err = cli(
        "install", "app", "-n", NS, "--reference", REF, "--cred", "hello-creds", "--follow"
    )
    assert code == 0, err
    assert out == "install of app: hello\n"
    assert "install of dev/app: run " in err

    code, out, _ = cli("installations", "list", "-n", NS)
    header, row = out.splitlines()
    assert header.split() == [
        "NAMESPACE",
        "NAME",
        "BUNDLE",
        "STATE",
        "LAST",
        "ACTION",
        "STATUS",
        "MODIFIED",
    ]
    assert row.split()[:6] == [NS, "app", REF, "installed", "install", "SUCCEEDED"]
    code, out, _ = cli("installations", "show", "app", "-n", NS)
    fields = dict(line.split(":", 1) for line in out.splitlines())
    assert {
        k: v.strip() for k, v in fields.items() if k in ("Bundle", "State", "Credential sets")
    } == {
        "Bundle": REF,
        "State": "installed",
        "Credential sets": "hello-creds",
    }
    code, out, _ = cli("installations", "show", "app", "-n", NS, "-o", "json")
    shown = json.loads(out)
    assert shown["credentialSets"] == ["hello-creds"]
    assert shown["status"]["state"] == "INSTALLATION_STATE_INSTALLED"

    code, out, _ = cli("installations", "outputs", "list", "app", "-n", NS)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[:3] for r in rows] == [
        ["greeting", "string", "hello"],
        ["password", "string", "******"],
    ]
    code, out, _ = cli("installations", "output", "show", "greeting", "-i", "app", "-n", NS)
    assert (code, out) == (0, "hello\n")
    code, _, err = cli("installations", "output", "show", "password", "-i", "app", "-n", NS)
    assert code == 1 and "sensitive" in err
    code, out, _ = cli("installations", "outputs", "list", "app", "-n", NS, "-o", "json")
    assert [o.get("value") for o in json.loads(out)] == ["hello", None]  # never a secret

    # Upgrade with a parameter set and a parameter: the parameter wins.
    code, out, err = cli("upgrade", "app", "-n", NS, "--param-set", "hello-params")
    assert code == 0, err
    assert [line.split()[2:4] for line in out.splitlines()][-1] == ["upgrade", "SUCCEEDED"]
    code, out, _ = cli("installations", "output", "show", "greeting", "-i", "app", "-n", NS)
    assert out == "hi\n"
    # Values are typed by the bundle's definitions, as Porter does: times is an integer (the
    # server refuses the text "3" for it).
    with Client(Target(server=server.target)) as client, pytest.raises(grpc.RpcError) as refused:
        client.execute(NS, "app", "upgrade", parameters={"times": "3"})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(SystemExit) as usage:
        main(["upgrade", "app", "-n", NS, "--param", "times=often"])
    assert usage.value.code == 2
    code, out, err = cli(
        "upgrade", "app", "-n", NS, "--param", "greeting=howdy", "--param", "times=3", "--no-wait"
    )
    run_id = out.strip()
    assert code == 0 and len(run_id) == 26, err
    code, out, _ = cli("runs", "watch", run_id)
    assert code == 0 and out.splitlines()[-1].split()[1:4] == [run_id, "upgrade", "SUCCEEDED"]
    code, out, _ = cli("installations", "runs", "show", run_id)
    assert "Parameters:    greeting=howdy, times=3" in out
    code, out, _ = cli("installations", "logs", "show", "-i", "app", "-n", NS)
    assert out == "upgrade of app: howdy\n"

    code, out, err = cli("invoke", "app", "-n", NS, "--action", "fail", "--follow")
    assert code == 4 and "FAILED" in err and "about to fail" in out
    code, out, _ = cli("installations", "runs", "list", "app", "-n", NS)
    actions = [line.split()[1:3] for line in out.splitlines()[1:]]
    assert actions == [
        ["fail", "FAILED"],
        ["upgrade", "SUCCEEDED"],
        ["upgrade", "SUCCEEDED"],
        ["install", "SUCCEEDED"],
    ]
    failed = out.splitlines()[1].split()[0]
    code, out, err = cli("installations", "runs", "show", failed)
    assert code == 0, err
    assert "Action:        fail" in out and "State:         FAILED" in out
    code, out, _ = cli("installations", "logs", "show", "-i", "app", "-n", NS, "--run", failed)
    assert "about to fail" in out

    code, _, err = cli("installations", "delete", "app", "-n", NS)
    assert code == 1 and "FAILED_PRECONDITION" in err  # still installed
    code, out, err = cli("uninstall", "app", "-n", NS)
    assert code == 0, err
    code, out, _ = cli("installations", "delete", "app", "-n", NS)
    assert (code, out) == (0, "deleted installation dev/app\n")
    code, _, err = cli("installations", "show", "app", "-n", NS)
    assert code == 1 and "NOT_FOUND" in err


def test_runs_cancel(cli, world, server):
    code, out, err = cli("install", "app", "-n", NS, "--reference", REF, "--cred", "hello-creds")
    assert code == 0, err
    # Not a terminal: state lines and notes only, no spinner or escape codes.
    assert [line.split()[2:] for line in out.splitlines()][-1] == ["install", "SUCCEEDED"]
    assert all(line.startswith("porter-bundle: ") for line in err.splitlines()), err
    assert "waiting" not in err and "\x1b" not in out + err
    code, out, _ = cli("invoke", "app", "-n", NS, "--action", "hang", "--no-wait")
    run_id = out.strip()
    # What a user following the run sees when it is canceled.
    follower = subprocess.Popen(
        [str(BIN), "logs", run_id, "--follow", "--server", server.target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        code, out, _ = cli("installations", "logs", "show", "-i", "app", "-n", NS, "--run", run_id)
        if "hanging" in out or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    code, out, err = cli("runs", "cancel", run_id)
    assert code == 0, err
    assert out.split()[1:4] == [run_id, "hang", "CANCELED"]
    assert err == "" and "\x1b" not in out
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 4 and "hanging" in out and f"run {run_id} CANCELED" in err
    code, _, err = cli("runs", "cancel", run_id)
    assert code == 1 and "already ended" in err
