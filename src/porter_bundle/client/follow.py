"""``porter-bundle logs`` and ``porter-bundle runs watch``: live run logs and states.

Both print as things happen and survive a server that goes away: on UNAVAILABLE they call
again (``--reconnect`` seconds at most, with backoff), a log from the byte offset it had
reached, a watch from the current state (states already printed are not printed again).

Exit codes: 0 done (with ``--follow`` or a watched run: the run SUCCEEDED); 1 the run ended
FAILED or CANCELED; 2 bad usage; 3 the call failed (not found, server unreachable ...);
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

import grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import run_pb2
from porter.bundle.v1.porter_bundle_pb2_grpc import PorterBundleStub
from porter_bundle.client import add_server_flag, connection

if TYPE_CHECKING:
    from porter.bundle.v1.porter_bundle_pb2_grpc import PorterBundleAsyncStub

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_CALL_FAILED = 3
EXIT_INTERRUPTED = 130
DEFAULT_RECONNECT_SECONDS = 30.0

FINAL = frozenset(
    {run_pb2.RUN_STATE_SUCCEEDED, run_pb2.RUN_STATE_FAILED, run_pb2.RUN_STATE_CANCELED}
)

# Pings every 20 s while a stream is open, also when no data flows (the server sends
# heartbeats, and accepts pings down to every 10 s), so dead connections are noticed.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]

EPILOG = """exit status: 0 done (with --follow, or for a watched run: it SUCCEEDED); 1 the run
ended FAILED or CANCELED; 2 bad usage; 3 the call failed (not found, server unreachable);
130 interrupted"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``logs`` and ``runs watch``."""
    logs = subparsers.add_parser(
        "logs",
        help="print a run's log, optionally following it live",
        description=(
            "Print a run's log (stdout and stderr combined). Run IDs are unique, so the ID alone "
            "finds the run; --installation (with --namespace) checks it belongs there and allows "
            "RUN_ID 'latest'. With --follow, keep printing as the container writes, until the run "
            "ends."
        ),
        epilog=EPILOG,
    )
    logs.add_argument("run_id", metavar="RUN_ID", help='a run ID, or "latest" with --installation')
    _add_address_flags(logs)
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the run ends"
    )
    logs.add_argument(
        "--offset", type=int, default=0, help="byte offset to start at (to resume); default 0"
    )
    _add_reconnect_flag(logs)
    add_server_flag(logs)
    logs.set_defaults(func=_logs_command)

    runs = subparsers.add_parser("runs", help="runs of installations")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    watch = runs_sub.add_parser(
        "watch",
        help="print run state changes as they happen",
        description=(
            "Print each state change (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED) of one run "
            "until it ends, or of every run of an installation until interrupted. One line each: "
            "time, run ID, action, state, message."
        ),
        epilog=EPILOG,
    )
    watch.add_argument(
        "run_id",
        metavar="RUN_ID",
        nargs="?",
        default="",
        help="watch only this run, until it ends (--installation is then optional)",
    )
    _add_address_flags(watch)
    _add_reconnect_flag(watch)
    add_server_flag(watch)
    watch.set_defaults(func=_watch_command)


def _add_address_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--namespace", default="", help='namespace of the installation ("" = global)'
    )
    parser.add_argument("-i", "--installation", default="", help="name of the installation")


def _add_reconnect_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reconnect",
        type=float,
        default=DEFAULT_RECONNECT_SECONDS,
        metavar="SECONDS",
        help="how long to keep calling again while the server is unavailable (0: never)",
    )


# --- commands ------------------------------------------------------------------------


def _logs_command(args: argparse.Namespace) -> int:
    if args.namespace and not args.installation:
        return _usage("--namespace needs --installation")
    if args.offset < 0:
        return _usage("--offset must be 0 or more")
    out = sys.stdout.buffer
    return _run(lambda: follow_logs(args, out.write, out.flush, sys.stderr))


def _watch_command(args: argparse.Namespace) -> int:
    if not args.installation and not args.run_id:
        return _usage("give --installation, a RUN_ID, or both")
    if args.namespace and not args.installation:
        return _usage("--namespace needs --installation")
    return _run(lambda: watch_runs(args, sys.stdout, sys.stderr))


def _usage(message: str) -> int:
    print(f"porter-bundle: error: {message}", file=sys.stderr)
    return 2


def _run(main: Callable[[], Awaitable[int]]) -> int:
    async def runner() -> int:
        return await main()

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def follow_logs(
    args: argparse.Namespace,
    write: Callable[[bytes], Any],
    flush: Callable[[], Any],
    err: TextIO,
) -> int:
    """Streams the log to ``write``; the exit code."""
    offset = args.offset
    final: run_pb2.Run | None = None
    request = pb.StreamRunLogsRequest(
        namespace=args.namespace,
        name=args.installation,
        run_id=args.run_id,
        follow=args.follow,
    )

    async def one_call(stub: PorterBundleAsyncStub) -> AsyncIterator[None]:
        nonlocal offset, final
        request.offset = offset
        async for message in stub.StreamRunLogs(request):
            kind = message.WhichOneof("event")
            if kind == "chunk":
                chunk = message.chunk
                write(chunk.data[max(0, offset - chunk.offset) :])
                flush()
                offset = max(offset, chunk.offset + len(chunk.data))
            elif kind == "run":
                # "latest" resolved: keep following this very run when calling again.
                request.run_id = message.run.id
                if message.run.state in FINAL:
                    final = message.run
            yield None

    code = await _with_reconnect(args, one_call, err)
    if code != EXIT_OK or not args.follow or final is None:
        return code
    return _result(final, err)


async def watch_runs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Prints state changes to ``out``; the exit code."""
    printed: dict[str, int] = {}
    last: run_pb2.Run | None = None
    request = pb.WatchInstallationRunsRequest(
        namespace=args.namespace, name=args.installation, run_id=args.run_id
    )

    async def one_call(stub: PorterBundleAsyncStub) -> AsyncIterator[None]:
        nonlocal last
        first = True
        async for message in stub.WatchInstallationRuns(request):
            if first and message.WhichOneof("event") == "heartbeat":
                where = f"{args.namespace}/{args.installation}".lstrip("/")
                print(f"porter-bundle: watching {where}: no run yet", file=err, flush=True)
            first = False
            if message.WhichOneof("event") == "run":
                run = message.run
                if printed.get(run.id) != run.state:
                    printed[run.id] = run.state
                    print(format_run(run), file=out, flush=True)
                last = run
            yield None

    code = await _with_reconnect(args, one_call, err)
    if code != EXIT_OK or not args.run_id or last is None:
        return code
    return _result(last, err)


def format_run(run: run_pb2.Run) -> str:
    """One line: time of the state, run ID, action, state, message."""
    stamp = run.create_time
    if run.state in FINAL and run.HasField("complete_time"):
        stamp = run.complete_time
    elif run.state == run_pb2.RUN_STATE_RUNNING and run.HasField("start_time"):
        stamp = run.start_time
    when = stamp.ToJsonString() if stamp.seconds or stamp.nanos else "-"
    action = run.custom_action or run_pb2.Action.Name(run.action).removeprefix("ACTION_").lower()
    state = run_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_")
    line = f"{when} {run.id} {action} {state}"
    return f"{line} {run.message}" if run.message else line


def _result(run: run_pb2.Run, err: TextIO) -> int:
    if run.state == run_pb2.RUN_STATE_SUCCEEDED:
        return EXIT_OK
    state = run_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_")
    detail = f": {run.message}" if run.message else ""
    print(f"porter-bundle: run {run.id} {state}{detail}", file=err)
    return EXIT_RUN_FAILED


async def _with_reconnect(
    args: argparse.Namespace,
    one_call: Callable[[PorterBundleAsyncStub], AsyncIterator[None]],
    err: TextIO,
) -> int:
    """Runs ``one_call`` until it ends; calls again on UNAVAILABLE for up to ``--reconnect``
    seconds since the last message. The exit code."""
    loop = asyncio.get_running_loop()
    delay = 0.2
    last_progress = loop.time()
    async with connection.aio_channel(args, CHANNEL_OPTIONS) as channel:
        stub: PorterBundleAsyncStub = PorterBundleStub(channel)
        while True:
            try:
                async for _ in one_call(stub):
                    last_progress = loop.time()
                    delay = 0.2
                return EXIT_OK
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    print(f"porter-bundle: error: {exc.code().name}: {exc.details()}", file=err)
                    return EXIT_CALL_FAILED
                if loop.time() - last_progress + delay > args.reconnect:
                    print(f"porter-bundle: error: UNAVAILABLE: {exc.details()} (gave up)", file=err)
                    return EXIT_CALL_FAILED
                print(f"porter-bundle: {exc.details()}; calling again", file=err, flush=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
