"""``porter-bundle logs RUN_ID`` and ``porter-bundle runs watch|cancel``: runs by their ID.

Logs and watches print as things happen and call again when a server they had reached goes
away (``--reconnect`` seconds at most); they fail at once when the first call cannot reach it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from contextlib import nullcontext
from typing import Any, TypeVar

import click

from porter.bundle.v1 import run_pb2
from porter_bundle.cli import context, output
from porter_bundle.cli.exit_codes import EPILOG, Exit, Failure
from porter_bundle.client import Client
from porter_bundle.client.follow import DEFAULT_RECONNECT_SECONDS, FINAL, follow_logs, watch_runs

CANCEL_WAIT_SECONDS = 120.0
"""How long ``runs cancel`` waits for the run to end (the server's cancel grace and a margin)."""

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine; Ctrl-C ends the command with 130."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise Failure(Exit.INTERRUPTED) from None


def notice(text: str) -> None:
    """A progress note on standard error."""
    click.echo(f"porter-bundle: {text}", err=True)


def result(run: run_pb2.Run) -> int:
    """0 for a SUCCEEDED run; else 4, saying how it ended."""
    if run.state == run_pb2.RUN_STATE_SUCCEEDED:
        return Exit.OK
    state = run_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_")
    detail = f": {run.message}" if run.message else ""
    raise Failure(Exit.ACTION_FAILED, f"run {run.id} {state}{detail}")


def action_name(run: run_pb2.Run) -> str:
    """install, upgrade, uninstall or the custom action's name."""
    return run.custom_action or run_pb2.Action.Name(run.action).removeprefix("ACTION_").lower()


def state_name(run: run_pb2.Run) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or CANCELED."""
    return run_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_")


def format_run(run: run_pb2.Run) -> str:
    """One line: time of the state, run ID, action, state, message."""
    stamp = run.create_time
    if run.state in FINAL and run.HasField("complete_time"):
        stamp = run.complete_time
    elif run.state == run_pb2.RUN_STATE_RUNNING and run.HasField("start_time"):
        stamp = run.start_time
    when = stamp.ToJsonString() if stamp.seconds or stamp.nanos else "-"
    line = f"{when} {run.id} {action_name(run)} {state_name(run)}"
    return f"{line} {run.message}" if run.message else line


def print_run(run: run_pb2.Run) -> None:
    """Prints one state line, at once."""
    click.echo(format_run(run))
    sys.stdout.flush()


def stream_log(
    *, run_id: str, namespace: str = "", installation: str = "", offset: int = 0,
    follow: bool = False, reconnect: float = DEFAULT_RECONNECT_SECONDS,
) -> int:  # fmt: skip
    """Prints a run's log on standard output; with ``follow`` the run's result."""
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    final = run_async(
        follow_logs(
            context.target(),
            run_id=run_id,
            namespace=namespace,
            installation=installation,
            offset=offset,
            follow=follow,
            write=write,
            notice=notice,
            reconnect=reconnect,
        )
    )
    return result(final) if final is not None else Exit.OK


def installation_option(f: Any) -> Any:
    """``-i/--installation``."""
    return click.option("-i", "--installation", default="", help="name of the installation")(f)


def reconnect_option(f: Any) -> Any:
    """``--reconnect SECONDS``."""
    return click.option(
        "--reconnect",
        type=float,
        default=DEFAULT_RECONNECT_SECONDS,
        metavar="SECONDS",
        show_default=True,
        help="how long to keep calling again while a server that was reached is unavailable",
    )(f)


def _namespace(installation: str) -> str:
    if context.flag_given("namespace") and context.namespace() and not installation:
        raise click.UsageError("--namespace needs --installation")
    return context.namespace() if installation else ""


@click.command(
    short_help="print a run's log, optionally following it live",
    help=(
        "Print a run's log (stdout and stderr combined). Run IDs are unique, so the ID alone "
        "finds the run; --installation (with --namespace) checks it belongs there and allows "
        "RUN_ID 'latest'. With --follow, keep printing as the container writes, until the run "
        "ends (exit status 4 when it FAILED)."
    ),
    epilog=EPILOG,
)
@click.argument("run_id", metavar="RUN_ID")
@context.namespace_option
@installation_option
@click.option("-f", "--follow", is_flag=True, help="keep printing new output until the run ends")
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, help="byte offset to start at (to resume)"
)
@reconnect_option
@context.connection_options
def logs(run_id: str, installation: str, follow: bool, offset: int, reconnect: float) -> int:
    """``logs RUN_ID``."""
    namespace = _namespace(installation)
    return stream_log(
        run_id=run_id, namespace=namespace, installation=installation, offset=offset,
        follow=follow, reconnect=reconnect,
    )  # fmt: skip


@click.group(short_help="watch and cancel runs by their ID")
def runs() -> None:
    """Runs by their ID (see also `installations runs`)."""


@runs.command(
    short_help="print run state changes as they happen",
    help=(
        "Print each state change (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED) of one run "
        "until it ends (exit status 4 unless it SUCCEEDED), or of every run of an installation "
        "until interrupted. One line each: time, run ID, action, state, message."
    ),
    epilog=EPILOG,
)
@click.argument("run_id", metavar="[RUN_ID]", default="")
@context.namespace_option
@installation_option
@reconnect_option
@context.connection_options
def watch(run_id: str, installation: str, reconnect: float) -> int:
    """``runs watch``."""
    if not installation and not run_id:
        raise click.UsageError("give --installation, a RUN_ID, or both")
    namespace = _namespace(installation)
    last = run_async(
        watch_runs(
            context.target(),
            namespace=namespace,
            installation=installation,
            run_id=run_id,
            on_run=print_run,
            notice=notice,
            reconnect=reconnect,
        )
    )
    return result(last) if run_id and last is not None else Exit.OK


@runs.command(
    short_help="cancel an active run",
    help=(
        "Cancel an active run (SIGTERM, then SIGKILL after the server's grace) and print it once "
        "it has ended (with --no-wait: at once, RUNNING with canceling while it stops)."
    ),
)
@click.argument("run_id", metavar="RUN_ID")
@click.option("--wait/--no-wait", default=True, help="wait until the run has ended (default)")
@context.connection_options
def cancel(run_id: str, wait: bool) -> int:
    """``runs cancel RUN_ID``."""
    with Client(context.target()) as client:
        run = client.find_run(run_id)
        ended = client.cancel(run.namespace, run.installation, run.id)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        waiting = wait and ended.state not in FINAL
        with output.progress(f"waiting for run {run.id} to stop") if waiting else nullcontext():
            while wait and ended.state not in FINAL and time.monotonic() < deadline:
                time.sleep(0.2)
                ended = client.find_run(run.id)
    click.echo(format_run(ended))
    return Exit.OK
