"""The ``porter-bundle`` command: its groups, one exit status table, and logging (configured
here and nowhere else)."""

from __future__ import annotations

import logging
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


def configure_logging(level: str) -> None:
    """Logs to standard error at ``level``; secrets never reach a log line."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger().setLevel(level)
    # The secrets of running actions never reach a log line (nor a traceback).
    from porter_bundle.service.redact import LogRedactingFilter

    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogRedactingFilter) for f in handler.filters):
            handler.addFilter(LogRedactingFilter())
    # Alembic announces each of its plugins at INFO on every start; the migrations it runs stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@click.group(
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


def _register() -> None:
    from porter_bundle.cli import (
        actions,
        apply,
        bundles,
        context,
        installations,
        keys,
        runs,
        serve,
        sets,
        token,
    )

    root.add_command(serve.serve)
    root.add_command(apply.apply)
    for command in actions.COMMANDS:
        root.add_command(command)
    root.add_command(installations.installations)
    root.add_command(runs.runs)
    root.add_command(runs.logs)
    root.add_command(sets.credentials)
    root.add_command(sets.parameters)
    root.add_command(bundles.bundles)
    root.add_command(bundles.bundle_alias)
    root.add_command(context.context)
    root.add_command(keys.keys)
    root.add_command(token.token)


def _error(message: str) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: the exit status (SystemExit for --help and for bad
    usage, as argparse did)."""
    if os.environ.get(COMPLETE_VAR):
        root.main(args=argv, prog_name=PROG, complete_var=COMPLETE_VAR)
    args = sys.argv[1:] if argv is None else list(argv)
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
    except Failure as exc:
        if exc.message:
            _error(exc.message)
        return exc.code
    except GaveUp as exc:
        _error(f"UNAVAILABLE: {exc.error.details()} (gave up)")
        return Exit.UNREACHABLE
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        _error(f"{code}: {details}")
        return of_rpc_error(exc)
    return int(result or 0)


_register()
