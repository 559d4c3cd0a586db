"""The ``porter-bundle`` command: its groups, one exit status table, and logging (configured
here and nowhere else)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click
import grpc

from porter_bundle import __version__
from porter_bundle.cli.exit_codes import EPILOG, Exit, Failure, of_rpc_error
from porter_bundle.client.follow import GaveUp

PROG = "porter-bundle"
COMPLETE_VAR = "_PORTER_BUNDLE_COMPLETE"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(level: str, log_format: str = "text") -> None:
    """Logs to standard error at ``level`` in ``log_format``; secrets never reach a log line."""
    from porter_bundle.observability.logs import configure

    configure(level, "json" if log_format == "json" else "text")


# Each command is imported when it is used (a client command never loads the server's code).
COMMANDS = {
    "serve": "serve:serve",
    "apply": "apply:apply",
    "install": "actions:install",
    "upgrade": "actions:upgrade",
    "invoke": "actions:invoke",
    "uninstall": "actions:uninstall",
    "installations": "installations:installations",
    "runs": "runs:runs",
    "logs": "runs:logs",
    "credentials": "sets:credentials",
    "parameters": "sets:parameters",
    "bundles": "bundles:bundles",
    "bundle": "bundles:bundle_alias",
    "context": "context:context",
    "keys": "keys:keys",
    "token": "token:token",
}


class LazyGroup(click.Group):
    """A group whose commands (:data:`COMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[cmd_name].partition(":")
        command: click.Command = getattr(
            importlib.import_module(f"porter_bundle.cli.{module}"), attr
        )
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
@click.option(
    "--verbosity",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="WARNING",
    metavar="LEVEL",
    help="least severe log messages shown: debug, info, warning (default), error",
)
def root(verbosity: str) -> None:
    """Manage Cloud Native Application Bundles over gRPC, the way Porter does.

    `serve` runs the server; the other commands talk to one (--server, or a context).
    """
    configure_logging(verbosity.upper())


def _error(message: str) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: the exit status (SystemExit for --help and for bad
    usage, as argparse did)."""
    if os.environ.get(COMPLETE_VAR):
        root.main(args=argv, prog_name=PROG, complete_var=COMPLETE_VAR)
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["agent"]:  # Porter's own argument parsing (cobra's), not click's
        from porter_bundle import agent

        return agent.main(args[1:])
    try:
        with root.make_context(PROG, args) as ctx:
            result = root.invoke(ctx)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:  # bad usage: 2
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except (KeyboardInterrupt, click.Abort):
        return Exit.INTERRUPTED
    except GaveUp as exc:
        _error(f"UNAVAILABLE: {exc.error.details()} (gave up)")
        return Exit.UNREACHABLE
    except Failure as exc:
        if exc.message:
            _error(exc.message)
        return exc.code
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        _error(f"{code}: {details}")
        return of_rpc_error(exc)
    return int(result or 0)
