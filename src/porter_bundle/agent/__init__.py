"""``porter-bundle agent``: the Porter operator's agent, speaking to porter-bundle.

The Porter operator runs every action as a Kubernetes Job of its agent image
(AgentConfig ``porterRepository``/``porterVersion``), with arguments such as
``installation apply installation.yaml``. This is that agent for porter-bundle: the image's
``agent`` target has ``porter-bundle agent`` as its ENTRYPOINT. Like Porter's agent
(porter ``cmd/agent``) it copies ``/porter-config`` into ``PORTER_HOME``
(:mod:`.home`), prints ``porter <args>`` on stderr, then runs the command as Porter would,
with Porter's argument parsing (:mod:`.flags`) and exit codes: 0 ok, 1 error (also bad
usage), 2 interrupted.

Commands (:mod:`.commands`)::

    installation apply FILE [-n NS] [--force] [--dry-run]
    installation outputs list [-n NS] -i NAME [-o json|yaml|plaintext]
    credentials apply FILE | credentials delete [-n NS] NAME | credentials list [-n NS] [-o json]
    parameters  apply FILE | parameters  delete [-n NS] NAME | parameters  list [-n NS] [-o json]
    plugins install [-f FILE] [NAME] | plugins list [-o json]
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from porter_bundle import __version__
from porter_bundle.agent import commands, home, plugins
from porter_bundle.agent.flags import Command, Flag, UsageError, parse

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2

_NAMESPACE = Flag("namespace", "n", default="", help="namespace of the resource")
_OUTPUT = Flag("output", "o", default="plaintext", help="output format: plaintext, json, yaml")
_ALL = Flag("all-namespaces", boolean=True, default=False, help="list in every namespace")


def _tree() -> Command:
    """Porter's commands the operator runs; each leaf's ``run(ctx, parsed)`` does it."""

    def sets(name: str, aliases: tuple[str, ...]) -> Command:
        return Command(
            name,
            aliases,
            subcommands=[
                Command("apply", (), (_NAMESPACE,), commands.set_apply(name), "FILE"),
                Command("delete", ("rm",), (_NAMESPACE,), commands.set_delete(name), "NAME"),
                Command("list", ("ls",), (_NAMESPACE, _OUTPUT, _ALL), commands.set_list(name)),
            ],
        )

    installation = Command(
        "installations",
        ("installation", "inst"),
        subcommands=[
            Command(
                "apply",
                (),
                (
                    _NAMESPACE,
                    Flag("force", boolean=True, default=False),
                    Flag("dry-run", boolean=True, default=False),
                ),
                commands.installation_apply,
                "FILE",
            ),
            Command(
                "outputs",
                ("output",),
                subcommands=[
                    Command(
                        "list",
                        ("ls",),
                        (_NAMESPACE, _OUTPUT, Flag("installation", "i", default="")),
                        commands.installation_outputs_list,
                    )
                ],
            ),
        ],
    )
    plugin_commands = Command(
        "plugins",
        ("plugin",),
        subcommands=[
            Command(
                "install",
                (),
                (Flag("file", "f", default=""), Flag("version", "v", default="")),
                plugins.install,
                "[NAME]",
            ),
            Command("list", ("ls",), (_OUTPUT,), plugins.list_plugins),
        ],
    )
    return Command(
        "porter",
        subcommands=[
            installation,
            sets("credentials", ("credential", "cred", "creds")),
            sets("parameters", ("parameter", "param", "params")),
            plugin_commands,
        ],
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Runs the agent with ``argv`` (Porter's arguments); the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = home.environ() if env is None else env
    out = out or sys.stdout
    err = err or sys.stderr

    def say(line: str) -> None:
        print(line, file=err, flush=True)

    try:
        home.copy_config(env, say)
        say(f"porter-bundle agent v{__version__}")
        say(" ".join(["porter", *argv]))  # as Porter's agent: joined with spaces
        parsed = parse(_tree(), argv)
        server = home.server_config(home.load_porter_config(env), env)
        assert parsed.command.run is not None  # parse() returns leaves only
        return parsed.command.run(commands.Context(server, env, out, err), parsed)
    except UsageError as exc:
        say(f"Error: {exc}")
        return EXIT_ERROR
    except (home.AgentSetupError, commands.CommandFailed) as exc:
        say(f"Error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        say("Error: interrupted")
        return EXIT_INTERRUPTED


__all__ = ["main"]
