"""A client process of the ``streams`` benchmark: many live streams over a few channels.

``--watchers`` WatchInstallationRuns calls on one installation and ``--followers``
StreamRunLogs(follow) calls on one run, spread over ``--channels`` grpc.aio channels.
Once every stream has its first message it prints ``{"ready": N}``; it then records, for
each log line ``tick <n> <microseconds since the epoch>`` a follower receives, the delay
from that stamp (taken in the container just before the line is written) to its arrival.
Followers end with the run; ``stop`` on stdin (or the end of stdin) cancels the rest. It
then prints one JSON object: the latencies (ms), how many followers got the whole log
exactly (by SHA-256), the states each watcher saw, and errors.

Usage: ``python -m bench.streams_client --target HOST:PORT --namespace NS --installation NAME
--run-id ID [--watchers N] [--followers N] [--channels C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections import Counter
from typing import Any

import grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.run_pb2 import RunState

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class Results:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.logs: Counter[str] = Counter()
        self.watch_states: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.ready = 0


async def follow(
    stub: Any, args: argparse.Namespace, results: Results, first: asyncio.Event
) -> None:
    request = pb.StreamRunLogsRequest(
        namespace=args.namespace, name=args.installation, run_id=args.run_id, follow=True
    )
    digest = hashlib.sha256()
    pending = b""
    got_first = False
    try:
        async for message in stub.StreamRunLogs(request):
            if not got_first:
                got_first = True
                results.ready += 1
                first.set()
            if message.WhichOneof("event") != "chunk":
                continue
            now_us = time.time_ns() // 1000
            data = message.chunk.data
            digest.update(data)
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                parts = line.split()
                if len(parts) == 3 and parts[0] == b"tick":
                    results.latencies_ms.append((now_us - int(parts[2])) / 1000)
        results.logs[digest.hexdigest()] += 1
    except grpc.aio.AioRpcError as exc:
        results.errors[f"follow {exc.code().name}"] += 1
    except asyncio.CancelledError:
        results.errors["follow canceled before the end"] += 1


async def watch(
    stub: Any, args: argparse.Namespace, results: Results, first: asyncio.Event
) -> None:
    request = pb.WatchInstallationRunsRequest(namespace=args.namespace, name=args.installation)
    states: list[str] = []
    got_first = False
    try:
        async for message in stub.WatchInstallationRuns(request):
            if not got_first:
                got_first = True
                results.ready += 1
                first.set()
            if message.WhichOneof("event") == "run" and message.run.id == args.run_id:
                states.append(RunState.Name(message.run.state).removeprefix("RUN_STATE_"))
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            results.errors[f"watch {exc.code().name}"] += 1
    except asyncio.CancelledError:
        pass
    results.watch_states[" ".join(states)] += 1


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results = Results()
    channels = [
        grpc.aio.insecure_channel(args.target, options=CHANNEL_OPTIONS)
        for _ in range(args.channels)
    ]
    stubs = [porter_bundle_pb2_grpc.PorterBundleStub(c) for c in channels]
    total = args.watchers + args.followers
    tasks: list[asyncio.Task[None]] = []
    firsts: list[asyncio.Event] = []
    for i in range(total):
        first = asyncio.Event()
        firsts.append(first)
        stub = stubs[i % len(stubs)]
        work = follow if i < args.followers else watch
        tasks.append(asyncio.create_task(work(stub, args, results, first)))
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), timeout=120)
    print(json.dumps({"ready": results.ready, "seconds": time.perf_counter() - started}))
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop", or EOF
    followers = tasks[: args.followers]
    done, _ = await asyncio.wait(followers, timeout=args.follower_grace)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return {
        "latencies_ms": [round(x, 3) for x in results.latencies_ms],
        "logs": dict(results.logs),
        "watch_states": dict(results.watch_states),
        "errors": dict(results.errors),
        "followers_done_at_stop": len(done),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.streams_client", description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--installation", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--watchers", type=int, default=0)
    p.add_argument("--followers", type=int, default=0)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument(
        "--follower-grace", type=float, default=30.0, help="after stop: wait for followers"
    )
    return p


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(_parser().parse_args()))))
