"""The command line as a whole: help that fits a screen, one exit status table, failing fast
when the server cannot be reached, and client contexts (flag > environment > context)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import yaml

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter_bundle.cli import main
from porter_bundle.cli.main import root
from tests.helpers import on_a_terminal

BIN = Path(sys.executable).with_name("porter-bundle")
SCREEN_LINES = 40
UNREACHABLE = "127.0.0.1:1"


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _groups(group, path=()):
    yield path
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group) and not command.hidden:
            yield from _groups(command, (*path, name))


def test_help_of_every_group_fits_one_screen_and_tells_each_verb(capsys):
    groups = list(_groups(root))
    assert ("installations", "runs") in groups and ("credentials",) in groups
    for path in groups:
        out = _help(capsys, *path)
        assert len(out.splitlines()) <= SCREEN_LINES, (path, out)
        commands = out.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
        for line in commands.splitlines():
            if not line.startswith("   "):  # each verb has its one-line description
                assert len(line.split()) > 1, (path, line)
            assert not line.endswith("..."), (path, line)  # whole, not cut by click
    top = _help(capsys)
    for text in ("0 ok", "1 refused", "2 bad usage", "3 cannot reach", "4 the action", "130"):
        assert text in top


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("porter-bundle ")


@pytest.mark.parametrize(
    "args",
    [
        ("installations", "list"),
        ("logs", "01JDZZZZZZZZZZZZZZZZZZZZZZ", "--follow"),
        ("runs", "watch", "-i", "app"),
        ("install", "app", "--reference", "example.com/app:v1"),
    ],
)
def test_an_unreachable_server_exits_3_at_once(args, capsys):
    started = time.monotonic()
    assert main([*args, "--server", UNREACHABLE]) == 3
    assert time.monotonic() - started < 10  # no 30 s of calling again
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and "calling again" not in err


def test_apply_tells_a_refused_document_from_an_unreachable_server(tmp_path: Path, server, capsys):
    doc = tmp_path / "creds.yaml"
    doc.write_text("schemaType: CredentialSet\nschemaVersion: 0.1.0\nname: c\ncredentials: []\n")
    assert main(["apply", str(doc), "--server", UNREACHABLE]) == 3
    assert main(["apply", str(doc), "--server", server.target]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().out


def test_bad_usage_exits_2(capsys):
    for args in (["installations", "frobnicate"], ["install"], ["install", "a", "--param", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--server", UNREACHABLE])
        assert exit_.value.code == 2, args
    assert "'x' is not NAME=VALUE" in capsys.readouterr().err


def test_contexts_flag_beats_environment_beats_context(tmp_path: Path, server, monkeypatch, capsys):
    server.services.installations.create(
        Installation(
            namespace="team", name="web", bundle=BundleReference(repository="r/b", tag="1")
        )
    )
    config = tmp_path / "client.yaml"
    monkeypatch.setenv("PORTER_BUNDLE_CLIENT_CONFIG", str(config))
    monkeypatch.delenv("PORTER_BUNDLE_SERVER", raising=False)
    assert main(["context", "set", "local", "--server", server.target, "-n", "team"]) == 0
    assert main(["context", "set", "nowhere", "--server", UNREACHABLE]) == 0
    assert yaml.safe_load(config.read_text())["current-context"] == "local"
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    capsys.readouterr()

    assert main(["installations", "list"]) == 0  # the context's server and namespace
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["team", "web"]
    assert main(["installations", "list", "-n", ""]) == 0  # a flag beats the context
    assert capsys.readouterr().out.splitlines()[1:] == []
    assert main(["installations", "list", "--context", "nowhere"]) == 3
    monkeypatch.setenv("PORTER_BUNDLE_CONTEXT", "nowhere")
    assert main(["installations", "list"]) == 3
    monkeypatch.setenv("PORTER_BUNDLE_SERVER", server.target)  # the environment beats it
    assert main(["installations", "list", "-n", "team"]) == 0
    monkeypatch.delenv("PORTER_BUNDLE_SERVER")
    monkeypatch.delenv("PORTER_BUNDLE_CONTEXT")
    assert main(["installations", "list", "--server", UNREACHABLE]) == 3  # the flag beats all
    capsys.readouterr()

    assert main(["context", "use", "nowhere"]) == 0
    assert capsys.readouterr().out == "current context: nowhere\n"
    assert main(["context", "list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["local", server.target], ["*", "nowhere", UNREACHABLE]]
    assert main(["context", "use", "missing"]) == 1
    assert main(["context", "delete", "nowhere"]) == 0
    assert main(["context", "show", "local"]) == 0
    assert yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])["local"]["namespace"] == "team"


def test_client_settings_are_read_when_the_command_runs(server, monkeypatch, capsys):
    """Env defaults were once read when the parser was built: importing (and building) the
    commands first must not freeze them."""
    ctx = click.Context(root)
    assert all(root.get_command(ctx, name) for name in root.list_commands(ctx))
    monkeypatch.setenv("PORTER_BUNDLE_SERVER", server.target)
    assert main(["installations", "list"]) == 0
    monkeypatch.setenv("PORTER_BUNDLE_SERVER", UNREACHABLE)
    assert main(["installations", "list"]) == 3


def test_no_colour_when_not_a_terminal(server):
    done = subprocess.run(
        [str(BIN), "bundles", "list", "--server", server.target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.split() == [
        "REFERENCE",
        "NAME",
        "VERSION",
        "SOURCE",
        "DIGEST",
    ]
    assert "\x1b[" not in done.stdout


def test_a_server_without_container_engine_refuses_an_action_exit_1(server, stub, capsys):
    """UNAVAILABLE about the server's own dependency is a refusal (1), not an unreachable
    server (3)."""
    import json

    from porter.bundle.v1 import porter_bundle_pb2 as pb
    from tests.oci import bundle_doc

    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/app:v1", bundle_json=json.dumps(bundle_doc("localhost/x:1"))
        )
    )
    code = main(
        ["install", "app", "--reference", "localhost:5000/app:v1", "--server", server.target]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert "UNAVAILABLE" in err


def test_logs_takes_a_namespace_from_the_environment_only_with_an_installation(
    server, monkeypatch, capsys
):
    monkeypatch.setenv("PORTER_BUNDLE_NAMESPACE", "team")
    code = main(["logs", "01JDZZZZZZZZZZZZZZZZZZZZZZ", "--server", server.target])
    assert code == 1 and "NOT_FOUND" in capsys.readouterr().err  # not a usage error
    with pytest.raises(SystemExit) as usage:
        main(["logs", "latest", "-n", "team", "--server", server.target])
    assert usage.value.code == 2 and "--namespace needs --installation" in capsys.readouterr().err


def _progress_on(env: dict[str, str]) -> bytes:
    """What ``progress`` writes to a pseudo-terminal (stdout and stderr both on it)."""
    script = (
        "import time\nfrom porter_bundle.cli.output import progress\n"
        "with progress('waiting for run X'):\n    time.sleep(0.5)\n"
    )
    return on_a_terminal([sys.executable, "-c", script], env)


def test_progress_spins_on_a_terminal_only_without_no_color():
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    assert b"waiting for run X" in _progress_on(env)
    assert b"waiting" not in _progress_on(env | {"NO_COLOR": "1"})
    assert b"waiting" not in _progress_on(env | {"TERM": "dumb"})
