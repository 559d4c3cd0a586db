"""Every ``porter-bundle`` command README.md and docs/*.md show inline (in a code span) runs:
as written (placeholders such as NAME or RUN_ID given real values) against a server with
Podman, an installation and a run; or, for the few that start a long-lived process or are a
synopsis, listed in SYNOPSES with why, and checked against the command's --help (the command
exists and takes every flag the span shows). A new span runs here without being listed."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from porter_bundle import config
from porter_bundle.service import Services
from porter_bundle.store import Keyring
from tests.cli.hello import IMAGE, RUN_SCRIPT
from tests.doc_blocks import REPO, block, documents, inline_commands, script_env
from tests.helpers import engine_services

pytestmark = pytest.mark.slow

SYNOPSES: dict[str, tuple[str, list[str]]] = {
    # span: (why it is not run as written, the command that shows it exists)
    "porter-bundle GROUP VERB": ("the shape of every command", ["porter-bundle", "--help"]),
    ".venv/bin/porter-bundle serve --container-host unix:///tmp/podman.sock": (
        "a foreground server; the tour test's server has the test Podman",
        ["porter-bundle", "serve", "--help"],
    ),
    "porter-bundle serve": (
        "a foreground server; tests/test_cli.py runs it as a process",
        ["porter-bundle", "serve", "--help"],
    ),
    "porter-bundle agent": (
        "the operator's agent, run by its Jobs; tests/agent run it",
        ["porter-bundle", "agent", "plugins", "list"],
    ),
    "porter-bundle agent ARGS": (
        "Porter's commands: tests/agent and the operator simulation run them",
        ["porter-bundle", "agent", "credentials", "list", "-n", "dev"],
    ),
    "porter-bundle apply FILE... [--server ADDR] [-n NAMESPACE] [--dry-run] [--force]": (
        "a synopsis; docs/api.md's examples and the tour run apply",
        ["porter-bundle", "apply", "--help"],
    ),
}
TOKEN = "tok-Yx81-docs"
STDIN = {"porter-bundle token hash": TOKEN + "\n"}


@pytest.fixture
def keyring(db_path: Path) -> Keyring:
    """The server's keys in the data directory's default key file, as `serve` makes it, so
    the `keys` commands as written (no flags, PORTER_BUNDLE_DATA_DIR) use its database."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return config.open_keyring(config.Settings(data_dir=str(db_path.parent)))


@pytest.fixture
def services(store, podman_host) -> Services:
    # The hang run must outlive the spans run before `runs cancel` on a loaded machine.
    return engine_services(store, podman_host, run_timeout_seconds=600)


def spans() -> list[tuple[str, str]]:
    return [(doc, span) for doc in documents() for span in inline_commands(doc)]


def sh(command: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_inline_command_runs(
    server, podman_service, test_image, db_path: Path, tmp_path: Path
):
    podman_service.podman("tag", test_image("hello", RUN_SCRIPT), IMAGE)
    env = script_env(
        tmp_path,
        PORTER_BUNDLE_SERVER=server.target,
        PORTER_BUNDLE_NAMESPACE="dev",
        PORTER_BUNDLE_DATA_DIR=str(db_path.parent),
    )
    setup = block("README.md", "tour").split("\n# 3.", 1)[0]  # the tour's sets and bundle
    setup += (
        "\nporter-bundle install hello -n dev --reference localhost:5000/hello:v0.1.0"
        " --cred hello-creds\n"
        "porter-bundle invoke hello -n dev --action hang --no-wait\n"  # an active run to cancel
    )
    done = sh(setup.replace("127.0.0.1:3001", server.target), env)
    assert done.returncode == 0, done.stdout + done.stderr
    values = {"NAME": "hello", "RUN_ID": done.stdout.split()[-1]}

    found = spans()
    assert len(found) >= 15 and set(SYNOPSES) <= {span for _, span in found}, (
        "SYNOPSES lists a span no document shows any more"
    )
    outputs: dict[str, str] = {}
    for doc, span in found:
        if span in SYNOPSES:
            _, probe = SYNOPSES[span]
            done = sh(shlex.join(probe), env)
            assert done.returncode == 0, (doc, span, done.stdout + done.stderr)
            if probe[-1] == "--help":
                for flag in re.findall(r"(?<![\w-])--?[a-z][\w-]*", span):
                    assert flag in done.stdout, f"{doc}: `{span}`: {flag} is not in --help"
            continue
        command = re.sub(r"\b[A-Z][A-Z_]+\b", lambda m: values.get(m[0], m[0]), span)
        done = sh(command, env, STDIN.get(span, ""))
        assert done.returncode == 0, (doc, command, done.stdout + done.stderr)
        outputs[span] = done.stdout + done.stderr
        assert "Traceback" not in outputs[span] and "s3cret" not in outputs[span]

    assert f"{values['RUN_ID']} hang CANCELED" in outputs["porter-bundle runs cancel RUN_ID"]
    listed = outputs["porter-bundle installations runs list NAME"].splitlines()
    assert [line.split()[1:3] for line in listed[1:]][-1] == ["install", "SUCCEEDED"]
    assert "Commands:" in outputs["porter-bundle --help"]
    assert "- name: ci" in outputs["porter-bundle token new ci --role operator=team-a,team-b"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", sh("porter-bundle token hash", env, TOKEN).stdout)
    assert "runs.parameters" in outputs["porter-bundle keys status"]
