"""The command tree as a whole: -o on every read command, shell completion as the README shows
it, and colour only on a terminal without NO_COLOR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from porter_bundle.cli import main
from porter_bundle.cli.main import root
from porter_bundle.cli.output import FORMATS
from tests.helpers import on_a_terminal

BIN = Path(sys.executable).with_name("porter-bundle")
READ_VERBS = ("list", "show", "status", "export")
NOT_MESSAGES = {("installations", "logs", "show"): "prints the run's log bytes as they are"}
DOCUMENT_FORMATS = ["yaml", "json"]  # export prints Porter's document, as `porter ... export -o`


def leaves(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if command.hidden:
            continue
        if isinstance(command, click.Group):
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_read_command_takes_output_formats():
    read = {path: cmd for path, cmd in leaves(root) if path[-1] in READ_VERBS}
    assert len(read) >= 15 and ("keys", "status") in read and ("context", "list") in read
    missing = []
    for path, command in read.items():
        option = next((p for p in command.params if "-o" in getattr(p, "opts", ())), None)
        if path in NOT_MESSAGES:
            assert option is None, path
            continue
        wanted = DOCUMENT_FORMATS if path[-1] == "export" else list(FORMATS)
        if option is None or list(getattr(option.type, "choices", ())) != wanted:
            missing.append(" ".join(path))
    assert not missing, f"read commands without -o {'|'.join(FORMATS)}: {missing}"


def test_context_list_and_show_as_json(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("PORTER_BUNDLE_CLIENT_CONFIG", str(tmp_path / "client.yaml"))
    assert main(["context", "set", "lab", "--server", "10.0.0.1:3001", "-n", "dev", "--use"]) == 0
    capsys.readouterr()
    assert main(["context", "list", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "lab", "current": True, "server": "10.0.0.1:3001", "namespace": "dev"}
    ]
    assert main(["context", "show", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "lab": {"server": "10.0.0.1:3001", "namespace": "dev"}
    }


@pytest.mark.slow  # bash and two processes
def test_bash_completion_as_the_readme_shows_it():
    script = (
        'eval "$(_PORTER_BUNDLE_COMPLETE=bash_source porter-bundle)"\n'
        "complete -p porter-bundle\n"  # what bash calls on TAB: the function, with the command
        "COMP_WORDS=(porter-bundle installations ru); COMP_CWORD=2; COMPREPLY=()\n"
        '_porter_bundle_completion porter-bundle; echo "${COMPREPLY[@]}"\n'
        "COMP_WORDS=(porter-bundle installations list --out); COMP_CWORD=3; COMPREPLY=()\n"
        '_porter_bundle_completion porter-bundle; echo "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN.parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "complete -o nosort -F _porter_bundle_completion porter-bundle",
        "runs",
        "--output",
    ]


@pytest.mark.slow  # two processes on a pty
def test_colour_on_a_terminal_unless_no_color(server):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    argv = [str(BIN), "bundles", "list", "--server", server.target]
    assert b"\x1b[" in on_a_terminal(argv, env)
    plain = on_a_terminal(argv, env | {"NO_COLOR": "1"})
    assert b"REFERENCE" in plain and b"\x1b[" not in plain
